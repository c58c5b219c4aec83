"""Figures the stress suites measure (counts, recovery times), for the
closing notes: each is printed as one ``EVIDENCE {json}`` line (visible with
``pytest -s`` or in a failure's captured output) and, when
SFCLOUD_EVIDENCE_DIR is set, appended to ``<dir>/<suite>.jsonl``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def record(suite: str, **figures: Any) -> None:
    line = json.dumps({"suite": suite, "at": round(time.time(), 3), **figures}, sort_keys=True)
    print(f"EVIDENCE {line}")
    directory = os.environ.get("SFCLOUD_EVIDENCE_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with open(Path(directory) / f"{suite}.jsonl", "a") as out:
            out.write(line + "\n")


def rounds(default: int) -> int:
    """How many times a repeated scenario runs: ``default`` in `make test`,
    more under `make soak` (SFCLOUD_STRESS_ROUNDS)."""
    return int(os.environ.get("SFCLOUD_STRESS_ROUNDS", default))
