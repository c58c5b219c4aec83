"""The lab's one cloud, shared by every test of tests/lab.

Built in the order an operator lives it: the previous build deployed onto
h1 with PostgreSQL and Redis (so that a second portal may come), then h2
and h3 joined as etcd members (learners, then promoted). The tests then
upgrade it to this build, lose and regain nodes and etcd members, grow and
shrink it, back it up and restore it, make h2 a second portal and watch one
portal's change live on the other's page.
Every figure is printed (pytest -s) for the closing note.

While writing a scenario, LAB_ATTACH=<file> reuses a lab that
``Lab.describe`` wrote (the session then neither deploys nor removes it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudstate.config import REPO_ROOT
from tests.lab.cloud import FIGURES, LabCloud, figure
from tests.lab.hosts import Lab


def previous_build(revision: str) -> Path:
    """The files of ``revision`` (the build an upgrade starts from), exported
    with git archive (no worktree: the repository's metadata is left alone)."""
    def resolve() -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "-q",
                               f"{revision}^{{commit}}"],
                              capture_output=True, text=True).stdout.strip()

    sha = resolve()
    if not sha:
        # A shallow clone (as some CI makes) has no parent commit: fetch one.
        subprocess.run(["git", "-C", str(REPO_ROOT), "fetch", "-q", "--deepen=1"],
                       capture_output=True, timeout=300)
        sha = resolve()
    if not sha:
        raise AssertionError(f"the upgrade's starting build {revision} is not in this "
                             "clone's history (LAB_UPGRADE_FROM names another)")
    target = Path(tempfile.gettempdir()) / f"sfcloud-build-{sha[:12]}"
    if not (target / "pyproject.toml").exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", sha],
                                 check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive.stdout, check=True)
        partial.rename(target)
    return target


@pytest.fixture(scope="session")
def cloud() -> Iterator[LabCloud]:
    attached = os.environ.get("LAB_ATTACH")
    if attached:
        yield LabCloud(Lab.attach(Path(attached)))
        return
    started = time.monotonic()
    lab = Lab(["h1", "h2", "h3"]).up()
    figure("lab up (s)", round(time.monotonic() - started, 1))
    made = LabCloud(lab)
    try:
        made.source = previous_build(os.environ.get("LAB_UPGRADE_FROM", "HEAD~1"))
        made.init("h1", database="postgresql")
        made.add_node("h2", "--etcd")
        made.add_node("h3", "--etcd")
        made.source = REPO_ROOT
        lab.describe(lab.directory / "lab.json")
        yield made
    finally:
        figure("sfcloud-deploy runs (s)", made.timings)
        started = time.monotonic()
        lab.keep_logs(REPO_ROOT / "var" / "lab-logs" / lab.id)
        lab.down()
        figure("lab down (s)", round(time.monotonic() - started, 1))
        figure("whole lab cycle (s)", dict(FIGURES))
