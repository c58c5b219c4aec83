#!/usr/bin/python3
"""Ansible module: put several small files in place in one step.

    sfcloud_files:
      files:
        /etc/sfcloud/sfcloud.env: {content: "...", owner: root, group: sfcloud, mode: "0640"}

Each file whose content, owner, group or mode differs is written (by
rename, created with its mode, so never briefly readable by others) and
reported; the task is changed if any was. One round trip for what would
otherwise be a task per file (sfcloud-deploy's certificates, keys, secrets
and settings files). The parent directories must exist.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule


def _wanted(spec: dict) -> tuple[bytes, int, int, int]:
    content = spec["content"].encode()
    uid = pwd.getpwnam(spec.get("owner", "root")).pw_uid
    gid = grp.getgrnam(spec.get("group", "root")).gr_gid
    return content, uid, gid, int(str(spec.get("mode", "0600")), 8)


def _current(path: str) -> tuple[bytes, int, int, int] | None:
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return None
        with open(path, "rb") as handle:
            return handle.read(), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)
    except FileNotFoundError:
        return None


def _write(path: str, content: bytes, uid: int, gid: int, mode: int) -> None:
    tmp = f"{path}.sfcloud-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def main() -> None:
    module = AnsibleModule(argument_spec={"files": {"type": "dict", "required": True}},
                           supports_check_mode=True)
    changed = []
    for path, spec in sorted(module.params["files"].items()):
        try:
            wanted = _wanted(spec)
        except KeyError as exc:
            module.fail_json(msg=f"{path}: no such user or group {exc}")
        if _current(path) == wanted:
            continue
        changed.append(path)
        if not module.check_mode:
            _write(path, *wanted)
    module.exit_json(changed=bool(changed), written=changed)


if __name__ == "__main__":
    main()
