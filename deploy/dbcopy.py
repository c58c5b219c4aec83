"""``python3 dbcopy.py SOURCE TARGET``: a consistent copy of the
portal's SQLite database, taken while the portal runs (SQLite's online
backup: readers and writers carry on). sfcloud-deploy's backups use it on
the portal's node; a restore copies the other way, with the portal stopped.
The copy is written beside its target and renamed over it. Standard
library only: the deploy copies it to every node with runservice.py.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path


def copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise FileNotFoundError(f"no database at {source}")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    # Read-only: a backup never writes to the live database.
    with sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True) as live, \
            sqlite3.connect(partial) as out:
        live.backup(out)
    os.replace(partial, target)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    try:
        copy(Path(argv[0]), Path(argv[1]))
    except (OSError, sqlite3.Error) as exc:
        print(f"deploy.dbcopy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
