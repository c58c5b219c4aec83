"""Start one of the cloud's services where no init system runs them.

``sfcloud-deploy`` with ``service_manager: none`` (containers, the test
lab) starts each service with start-stop-daemon, which keeps its pidfile,
and this small launcher, which does what the systemd units do before the
program runs: read the environment files (``KEY=value`` lines, as
``EnvironmentFile=``), make files private (``UMask=0077``), change to the
service's user and directory, send its output to a log, and then become the
program (exec), so the pidfile names the program itself and stopping it
stops that process only (as ``KillMode=process``: guests and dnsmasq live on).

    python3 runservice.py --env-file /etc/sfcloud/sfcloud.env \\
        --log /var/log/sfcloud/nodeagent.log --user root -- python -m nodeagent

It comes with the deploy tool, not with a release (the deploy copies it to
/usr/local/lib/sfcloud-deploy on every node), and needs only the standard
library, so Debian's Python runs it whatever release is installed.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Sequence
from pathlib import Path


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines; blank lines and ``#`` comments skipped; a value
    may be quoted with ' or " (the quotes are removed), as systemd reads them."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ValueError(f"{path}:{number}: not a KEY=value line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key] = value
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runservice.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", action="append", default=[], type=Path,
                        help="KEY=value lines to add to the environment (repeat)")
    parser.add_argument("--env-file-if-exists", action="append", default=[], type=Path,
                        help="the same, skipped when the file does not exist")
    parser.add_argument("--log", type=Path, required=True,
                        help="append output here; `-`: keep this process's (a one-off "
                             "command whose output its caller reads)")
    parser.add_argument("--user", default="root", help="run as this user (and its group)")
    parser.add_argument("--chdir", type=Path, default=Path("/"))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8"}
    for path in args.env_file:
        env.update(read_env_file(path))
    for path in args.env_file_if_exists:
        if path.exists():
            env.update(read_env_file(path))
    user = pwd.getpwnam(args.user)
    env.update({"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name})
    os.umask(0o077)
    if str(args.log) != "-":
        args.log.parent.mkdir(parents=True, exist_ok=True)
        log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if user.pw_uid != os.getuid():
            os.fchown(log, user.pw_uid, user.pw_gid)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
    os.chdir(args.chdir)
    if user.pw_uid != os.getuid():
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - an argument list, as given
    except OSError as exc:
        print(f"runservice: can't run {command[0]}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
