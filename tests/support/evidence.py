"""Figures the stress suites measure (counts, recovery times), for the
closing notes: each is printed as one ``EVIDENCE {json}`` line (visible with
``pytest -s`` or in a failure's captured output) and, when
SFCLOUD_EVIDENCE_DIR is set, appended to ``<dir>/<suite>.jsonl``."""

from __future__ import annotations

import json
import time
from typing import Any

from cloudstate.settings import read


def record(suite: str, **figures: Any) -> None:
    line = json.dumps({"suite": suite, "at": round(time.time(), 3), **figures}, sort_keys=True)
    print(f"EVIDENCE {line}")
    directory = read("SFCLOUD_EVIDENCE_DIR")
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / f"{suite}.jsonl", "a") as out:
            out.write(line + "\n")
