"""The versioned prompt set: the messages every paid request sends (annotation steps, the judge).

Prompts are data (``core/data/prompts.json``, or the file ``PREFDISSECT_PROMPTS`` names); their
version is part of every request key and of the feature-set name, so changing a prompt never
reuses an answer to the old one.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

PROMPTS_FILE = Path(__file__).resolve().parent / "data" / "prompts.json"

#: typical answer lengths (tokens) per step, for cost estimates before any answer exists
TYPICAL_OUTPUT = {"scenario": 12, "query": 120, "ratings": 900, "conditional": 200, "reference": 450,
                  "errors": 220, "judge": 1}


@lru_cache(maxsize=4)
def _prompts(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def prompts() -> dict[str, Any]:
    """The versioned prompt set (``PREFDISSECT_PROMPTS`` may point at another file of that shape)."""
    return _prompts(os.environ.get("PREFDISSECT_PROMPTS") or str(PROMPTS_FILE))



def messages(step: str, **values: str) -> list[dict[str, str]]:
    p = prompts()
    spec = p["steps"][step]
    return [
        {"role": "system", "content": spec.get("system", p["system"])},
        {"role": "user", "content": Template(spec["template"]).safe_substitute(**values)},
    ]


def pair(sample: dict[str, Any], orientation: str) -> dict[str, str]:
    a, b = sample["response_a"], sample["response_b"]
    r1, r2 = (a, b) if orientation == "AB" else (b, a)
    return {"query": sample["query"], "response_1": r1, "response_2": r2}
