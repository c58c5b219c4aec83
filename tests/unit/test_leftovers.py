"""Only guests of test clouds that are gone are ever taken for leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.leftovers import is_orphan, owning_test_dir


def test_the_test_directory_of_a_disk() -> None:
    assert owning_test_dir("/var/tmp/sfcloud-test-ab12-xyz/node/n/instances/u/vda.qcow2") == \
        Path("/var/tmp/sfcloud-test-ab12-xyz")
    assert owning_test_dir("/var/lib/sfcloud/instances/u/vda.qcow2") is None
    assert owning_test_dir("/var/tmp/other/vda.qcow2") is None
    assert owning_test_dir("/var/tmp/sfcloud-test-x") is None  # the directory itself holds no disk


@pytest.fixture
def live_test_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("tests.support.leftovers.TEST_ROOT", tmp_path)
    live = tmp_path / "sfcloud-test-live"
    live.mkdir()
    return live


def test_a_guest_whose_test_is_gone_is_an_orphan(live_test_dir: Path) -> None:
    gone = live_test_dir.parent / "sfcloud-test-gone"
    assert is_orphan("sfcloud-1234", [f"{gone}/vda.qcow2", f"{gone}/config.iso"])


def test_a_running_test_keeps_its_guests(live_test_dir: Path) -> None:
    gone = live_test_dir.parent / "sfcloud-test-gone"
    assert not is_orphan("sfcloud-1234", [f"{live_test_dir}/vda.qcow2"])
    assert not is_orphan("sfcloud-1234", [f"{gone}/vda.qcow2", f"{live_test_dir}/b.qcow2"])


def test_guests_that_are_not_sfcloud_tests_are_never_orphans(live_test_dir: Path) -> None:
    gone = live_test_dir.parent / "sfcloud-test-gone"
    assert not is_orphan("someone-else", [f"{gone}/vda.qcow2"])
    assert not is_orphan("sfcloud-1234", [f"{gone}/vda.qcow2", "/var/lib/libvirt/images/x.img"])
    assert not is_orphan("sfcloud-1234", [])
