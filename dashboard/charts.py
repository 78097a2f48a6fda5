"""Chart builders: pure functions from frames to ``alt.Chart``, tested through ``to_dict()``."""

from __future__ import annotations

import altair as alt
import pandas as pd


def scenario_bars(frame: pd.DataFrame) -> alt.Chart:
    """Samples per scenario group, one colour per dataset."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("samples:Q", title="samples"),
            y=alt.Y("scenario_group:N", title=None, sort="-x"),
            color=alt.Color("dataset:N", title="dataset"),
            tooltip=["dataset", "scenario_group", "samples"],
        )
        .properties(height=alt.Step(24))
    )


def agreement_heatmap(frame: pd.DataFrame) -> alt.Chart:
    """Agreement rate between judges on shared samples, with the count shared in the tooltip."""
    base = alt.Chart(frame).encode(
        x=alt.X("judge_a:N", title=None, axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("judge_b:N", title=None),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("rate:Q", title="agreement", scale=alt.Scale(domain=[0, 1], scheme="blues")),
        tooltip=["judge_a", "judge_b", "shared", "agree", alt.Tooltip("rate:Q", format=".1%")],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("rate:Q", format=".0%"),
        color=alt.condition("datum.rate > 0.6", alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(width=alt.Step(42), height=alt.Step(24))
