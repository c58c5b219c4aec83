"""``sfcloud-deploy join``: run as root on a new machine, with the command the
portal's Nodes page printed. Standard library only, so it also runs from a
bare checkout (``python3 -m deploy.joinclient``) before anything is installed.

1. Trust: the portal's join listener serves the cloud's CA; its SHA-256 must
   be the pinned one (``--ca-sha256``), else nothing is sent. From then on
   every request checks the listener's certificate against that CA and
   the address dialled, like any part of the cloud does.
2. Proof: the join token, with this machine's name, address (by default the
   one it reaches the portal from) and SSH host key. The portal uses the
   token up and answers the deploy's SSH public key, which goes into
   root's ``authorized_keys``.
3. The deploy machine (``sfcloud-deploy accept-joins``) now knows this
   machine's host key, reaches it over SSH and adds it with the same play
   as ``add-node``: certificates, etcd (as a learner, with ``--etcd``
   tokens), the agent. This command waits and says how that goes.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

HOST_KEYS = ("/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_ecdsa_key.pub",
             "/etc/ssh/ssh_host_rsa_key.pub")
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
TIMEOUT = 30.0


class JoinError(Exception):
    """The join can't go on; the message says why and what to do."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status  # the portal's HTTP status, when it answered


def _say(message: str) -> None:
    print(f"sfcloud-deploy join: {message}", flush=True)


def _split(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname or parsed.path not in ("", "/"):
        raise JoinError(f"{url}: give the portal's join address as the Nodes page printed "
                        "it, https://HOST:PORT")
    return parsed.hostname, parsed.port or 443


def trusted_ca(url: str, pin: str, *, timeout: float = TIMEOUT) -> str:
    """The cloud's CA (PEM) from the join listener, once its SHA-256 is the
    pinned one. The first request can't check the server yet; whatever it
    answers is only used if it matches the pin, and a server without a key
    that CA signed fails every request after it."""
    wanted = pin.strip().lower().replace(":", "")
    if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
        raise JoinError("--ca-sha256: the CA's SHA-256, 64 hexadecimal digits")
    unchecked = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unchecked.check_hostname = False
    unchecked.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/join/ca.crt", timeout=timeout,  # noqa: S310
                                    context=unchecked) as answer:
            pem = answer.read(64 * 1024).decode("ascii")
        der = ssl.PEM_cert_to_DER_cert(pem)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise JoinError(f"{url} did not give the cloud's CA: {exc}") from None
    if not hmac.compare_digest(hashlib.sha256(der).hexdigest(), wanted):
        raise JoinError(f"the CA {url} presents is not the pinned one "
                        f"(SHA-256 {hashlib.sha256(der).hexdigest()}): nothing was sent. Check "
                        "the address, or copy the command from the Nodes page again")
    return pem


class Portal:
    """The join listener, every request checked against the pinned CA."""

    def __init__(self, url: str, ca_pem: str, *, timeout: float = TIMEOUT):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.context = ssl.create_default_context(cadata=ca_pem)  # checks the host name too

    def call(self, method: str, path: str, body: dict | None = None,
             token: str | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(  # noqa: S310 - https only (checked above)
            self.url + path, method=method, headers=headers,
            data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,  # noqa: S310
                                        context=self.context) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                said = json.loads(exc.read()).get("error", "")
            except ValueError:
                said = ""
            raise JoinError(f"the portal refused ({exc.code}): {said or exc.reason}",
                            status=exc.code) from None
        except (OSError, ValueError) as exc:
            raise JoinError(f"{self.url} did not answer: {exc}") from None


def source_address(host: str, port: int, *, timeout: float = TIMEOUT) -> str:
    """This machine's address on the way to the portal: the one the other
    nodes reach it at, unless told otherwise."""
    with socket.create_connection((host, port), timeout=timeout) as connection:
        return str(connection.getsockname()[0])


def host_key(path: str | None) -> str:
    for candidate in [path] if path else HOST_KEYS:
        try:
            words = Path(candidate).read_text().split()
        except OSError:
            continue
        if len(words) >= 2:
            return f"{words[0]} {words[1]}"
    raise JoinError(f"no SSH host key in {path or ', '.join(HOST_KEYS)}: is sshd installed? "
                    "(--host-key PATH names another)")


def authorize(public_key: str, path: Path) -> bool:
    """Let the deploy machine's key in as root (``path``, 0600 in a 0700
    directory); False when it was there already."""
    line = public_key.strip()
    if not line.startswith(("ssh-", "ecdsa-")) or "\n" in line:
        raise JoinError("the portal gave no usable SSH key for the deploy machine")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    present = path.read_text().splitlines() if path.exists() else []
    if any(existing.split()[:2] == line.split()[:2] for existing in present if existing.strip()):
        return False
    with open(path, "a", encoding="ascii") as keys:
        os.fchmod(keys.fileno(), 0o600)
        if present and not path.read_text().endswith("\n"):
            keys.write("\n")
        keys.write(line + "\n")
    return True


def join(url: str, token: str, pin: str, *, name: str | None = None,
         address: str | None = None, host_key_path: str | None = None,
         authorized_keys: Path = Path(AUTHORIZED_KEYS), wait: float = 1800.0,
         interval: float = 3.0) -> str:
    """The whole join; answers the node's name once the deploy machine added it."""
    host, port = _split(url)
    portal = Portal(url, trusted_ca(url, pin))
    _say(f"{url} presents the pinned CA")
    body = {"token": token.strip(), "name": name or socket.gethostname().split(".")[0].lower(),
            "address": address or source_address(host, port),
            "host_key": host_key(host_key_path)}
    deadline = time.monotonic() + wait
    joined = _redeem(portal, body, deadline, interval)
    node = str(joined.get("node"))
    _say(f"token accepted: joining as {node} ({joined.get('address')})"
         f"{', an etcd member' if joined.get('etcd') else ''}")
    if authorize(str(joined.get("deploy_ssh_key", "")), authorized_keys):
        _say(f"the deploy machine's SSH key is in {authorized_keys}")
    follow(portal, token.strip(), node, deadline, interval)
    return node


def follow(portal: Portal, token: str, node: str, deadline: float, interval: float) -> None:
    """Wait until the deploy machine added ``node``, saying each step. The
    portal may not answer for a moment meanwhile: adding a node restarts it
    (every node gets the new etcd endpoints), so no answer or a 503 means
    ask again, until the deadline."""
    said = ""
    while True:
        try:
            found = portal.call("GET", "/join/progress", token=token)
        except JoinError as exc:
            if exc.status not in (0, 502, 503) or time.monotonic() > deadline:
                raise
            found = {"state": "waiting", "message": "the portal does not answer (restarting?)"}
        state, message = found.get("state"), found.get("message", "")
        if f"{state}{message}" != said:
            said = f"{state}{message}"
            _say(f"{state}{f': {message}' if message else ''}")
        if state == "joined":
            return
        if state == "failed":
            raise JoinError(f"the deploy machine could not add {node}: {message}")
        if time.monotonic() > deadline:
            raise JoinError("not joined in time (is `sfcloud-deploy accept-joins` running on the "
                            "deploy machine?)")
        time.sleep(interval)


def _redeem(portal: Portal, body: dict, deadline: float, interval: float) -> dict:
    """POST /join; while no deploy machine takes joins yet (a 409 that leaves
    the token unused), wait for one to start."""
    waiting = False
    while True:
        try:
            return portal.call("POST", "/join", body)
        except JoinError as exc:
            if exc.status != 409 or "accept-joins" not in str(exc) \
                    or time.monotonic() > deadline:
                raise
            if not waiting:
                waiting = True
                _say("waiting for the deploy machine to run `sfcloud-deploy accept-joins`")
        time.sleep(interval)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the portal's join address, https://HOST:PORT")
    parser.add_argument("--token", required=True, help="the join token (used once)")
    parser.add_argument("--ca-sha256", required=True, help="the cloud CA's SHA-256 (the pin)")
    parser.add_argument("--name", help="this node's name (default: the host name)")
    parser.add_argument("--address", help="this machine's address between the nodes "
                                          "(default: the one it reaches the portal from)")
    parser.add_argument("--host-key", help="this machine's SSH host key, a .pub file "
                                           "(default: /etc/ssh/ssh_host_ed25519_key.pub)")
    parser.add_argument("--authorized-keys", type=Path, default=Path(AUTHORIZED_KEYS),
                        help="where the deploy machine's key goes (default: root's)")
    parser.add_argument("--wait", type=float, default=1800.0,
                        help="seconds to wait for the deploy machine (default 1800)")


def run(args: argparse.Namespace) -> int:
    try:
        node = join(args.url, args.token, args.ca_sha256, name=args.name, address=args.address,
                    host_key_path=args.host_key, authorized_keys=args.authorized_keys,
                    wait=args.wait)
    except JoinError as exc:
        print(f"sfcloud-deploy join failed: {exc}", file=sys.stderr, flush=True)
        return 1
    _say(f"{node} is a node of the cloud")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfcloud-deploy join",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
