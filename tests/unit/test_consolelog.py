"""The serial log's tail across virtlogd's rotated files, and clearing it."""

from __future__ import annotations

from pathlib import Path

from nodeagent.consoles import logfile as consolelog


def test_tail_reads_across_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    (tmp_path / "console.log.1").write_bytes(b"oldest-")
    (tmp_path / "console.log.0").write_bytes(b"older-")
    log.write_bytes(b"newest")
    assert consolelog.tail(log, 3) == b"est"
    assert consolelog.tail(log, 10) == b"der-newest"
    assert consolelog.tail(log, 1000) == b"oldest-older-newest"
    assert consolelog.tail(log, 0) == b""
    assert consolelog.tail(log, None) == b"oldest-older-newest"  # the whole log
    assert consolelog.tail(tmp_path / "missing.log", 10) == b""


def test_clear_empties_the_log_in_place_and_drops_rotations(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"boot messages\n")
    (tmp_path / "console.log.0").write_bytes(b"rotated")
    with open(log, "ab") as writer:  # as virtlogd holds it: open, appending
        consolelog.clear(log)
        writer.write(b"after")
    assert log.read_bytes() == b"after"
    assert not (tmp_path / "console.log.0").exists()
    consolelog.clear(tmp_path / "missing.log")  # nothing to clear is fine


def test_scrollback_starts_at_a_line() -> None:
    assert consolelog.from_line_start(b"\x1b[1;3partial\nwhole line\n") == b"whole line\n"
    assert consolelog.from_line_start(b"no newline at all") == b"no newline at all"
