"""The scale harness (bench/scale.py) in small: three simulated nodes, thirty
instances, a few live lists. It must run end to end within a minute or so and
produce every figure of issue 16's table; the figures that are about
correctness rather than speed (no failed create, every instance running and
gone again, the revisions a lifecycle writes) are held to their goals here
too. `make scale` runs it at 10 and 100 nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloudstate.config import REPO_ROOT

pytestmark = pytest.mark.integration

FIGURES = (
    "API create", "placement decision", "create -> running", "agent memory",
    "every agent's memory", "portal memory", "etcd database", "GET /api/instances",
    "portal instance list page", "a row's state change", "API poweroff", "API poweron",
    "API delete", "etcd revisions per instance lifecycle", "nodes registered",
)


def test_the_harness_measures_a_small_simulated_cloud(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run = subprocess.run(
        [sys.executable, "bench/scale.py", "--nodes", "3", "--instances", "30",
         "--concurrency", "10", "--browsers", "5", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = {row["name"]: row for row in json.loads(out.read_text())["figures"]}
    for name in FIGURES:
        found = [row for title, row in figures.items() if title.startswith(name)]
        assert found, f"no figure {name!r} in {sorted(figures)}"
        assert all(row["value"] not in (None, {}, []) for row in found), found
    by_start = {title.split(",")[0].split(" (")[0]: row for title, row in figures.items()}
    assert by_start["API create"]["errors"] == 0, by_start["API create"]
    assert by_start["nodes registered"]["value"] == {"simulated": 3, "real": 0}
    assert by_start["etcd revisions per instance lifecycle"]["met"] is True
    # Each instance was seen running, by the agent of a simulated node.
    assert by_start["create -> running"]["value"]["n"] == 30
    for verb in ("API poweroff", "API poweron", "API delete"):
        assert by_start[verb]["errors"] == 0, by_start[verb]
