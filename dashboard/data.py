"""Thin cached wrappers over core: the only way pages reach the store.

Caches are keyed by the store path and a cheap fingerprint of the store's contents, so a
write by another session, the CLI or a worker shows up on the next rerun without a restart.
(The fingerprint argument is named ``fp``, not ``_fp``: st.cache_data leaves arguments whose
names start with an underscore out of the cache key.)
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import config, judges
from core.store import Store, open_store


def store() -> Store:
    """This thread's connection to the configured store."""
    return open_store(config.settings().store)


def fingerprint() -> tuple:
    s = store()
    return (str(s.path),) + tuple(
        s.conn.execute(
            "SELECT (SELECT COUNT(*) FROM samples), (SELECT MAX(rowid) FROM samples),"
            " (SELECT COUNT(*) FROM labels), (SELECT MAX(rowid) FROM labels),"
            " (SELECT COUNT(*) FROM profiles), (SELECT MAX(created_at) FROM profiles),"
            " (SELECT MAX(updated_at) FROM datasets)"
        ).fetchone()
    )


def ensure_seeded() -> bool:
    """Build the synthetic demo when the store is empty (and seeding is on). True if it built."""
    s = store()
    if not config.settings().seed_demo or not s.is_empty():
        return False
    from core import demo

    demo.build_demo(s)
    return True


@st.cache_data(show_spinner=False, max_entries=32)
def overview(fp: tuple) -> dict:
    ov = store().overview()
    return {
        "counts": ov.counts,
        "datasets": pd.DataFrame(ov.datasets),
        "scenarios": pd.DataFrame(ov.scenarios, columns=["dataset", "scenario_group", "samples"]),
        "judges": pd.DataFrame(ov.judges),
    }


@st.cache_data(show_spinner=False, max_entries=32)
def agreement(fp: tuple, dataset: str | None) -> pd.DataFrame:
    return judges.agreement_frame(store(), dataset)
