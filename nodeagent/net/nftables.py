"""NAT egress and floating addresses: one nftables table in a network's namespace.

The table is rendered whole from desired state and applied with one
``nft -f -`` (a single transaction: it either replaces the old table or
changes nothing). Its comment carries a hash of what was rendered, so an
unchanged table is not applied again, and a table someone altered by hand is
replaced on the next pass.

Traffic rules, inside the namespace (``int0`` faces the guests, ``eg0`` the
uplink):

- a floated guest's address is DNATed from its floating address, and its
  own outgoing traffic leaves with that floating address;
- an address routed to the network passes both ways as it is (a guest
  configured it);
- with NAT, the rest of the network leaves with the network's gateway
  address;
- everything else between the two sides is dropped, and the uplink side
  can't reach the namespace itself except for replies.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass

from nodeagent.net.names import EGRESS, INSIDE


class NftError(Exception):
    pass


@dataclass(frozen=True)
class Floating:
    floating: str
    private: str


@dataclass(frozen=True)
class EgressRules:
    table: str
    netblock: str
    gateway: str | None  # the network's NAT address; None: no NAT
    floating: tuple[Floating, ...]
    routed: tuple[str, ...] = ()  # addresses routed to the network as they are (no NAT)


def render(rules: EgressRules) -> str:
    body = [
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        *(f'    iifname "{EGRESS}" ip daddr {f.floating} dnat to {f.private}'
          for f in rules.floating),
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        *(f'    oifname "{EGRESS}" ip saddr {f.private} snat to {f.floating}'
          for f in rules.floating),
        *([f'    oifname "{EGRESS}" ip saddr {rules.netblock} snat to {rules.gateway}']
          if rules.gateway else []),
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        "    ct state established,related accept",
        "    ct state invalid drop",
        f'    iifname "{EGRESS}" oifname "{INSIDE}" ct status dnat accept',
        *(f'    iifname "{EGRESS}" oifname "{INSIDE}" ip daddr {address} accept'
          for address in rules.routed),
        *(f'    iifname "{INSIDE}" oifname "{EGRESS}" ip saddr {address} accept'
          for address in rules.routed),
        *([f'    iifname "{INSIDE}" oifname "{EGRESS}" ip saddr {rules.netblock} accept']
          if rules.gateway else
          [f'    iifname "{INSIDE}" oifname "{EGRESS}" ip saddr {f.private} accept'
           for f in rules.floating]),
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f'    iifname "{EGRESS}" ct state established,related accept',
        f'    iifname "{EGRESS}" drop',
        "  }",
    ]
    digest = hashlib.sha256("\n".join(body).encode()).hexdigest()[:32]
    return "\n".join([
        f"table ip {rules.table}",
        f"delete table ip {rules.table}",
        f"table ip {rules.table} {{",
        f'  comment "sfcloud {digest}"',
        *body,
        "}",
    ]) + "\n"


def digest_of(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('comment "sfcloud '):
            return line.split()[2].rstrip('"')
    return ""


def nft(*args: str, stdin: str | None = None,
        netns: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run nft here, or in the named network namespace."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, "nft", *args], input=stdin, capture_output=True, text=True,
                          timeout=30)


def _nft(namespace: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return nft(*args, stdin=stdin, netns=namespace)


def applied_digest(namespace: str, table: str) -> str:
    # nft 1.0.6's JSON output leaves table comments out; its text keeps them.
    result = _nft(namespace, "list", "table", "ip", table)
    return digest_of(result.stdout) if result.returncode == 0 else ""


def apply(namespace: str, rules: EgressRules) -> bool:
    """Make the namespace's table exactly ``rules``; False if it already was."""
    text = render(rules)
    if applied_digest(namespace, rules.table) == digest_of(text):
        return False
    result = _nft(namespace, "-f", "-", stdin=text)
    if result.returncode != 0:
        raise NftError(f"nft refused the rules for {namespace}: {result.stderr.strip()}")
    return True


def remove(namespace: str, table: str) -> None:
    result = _nft(namespace, "list", "table", "ip", table)
    if result.returncode == 0:
        removed = _nft(namespace, "delete", "table", "ip", table)
        if removed.returncode != 0:
            raise NftError(f"nft could not delete {table}: {removed.stderr.strip()}")


def tables(namespace: str | None = None) -> list[str]:
    """Names of the ip tables in a namespace (None: ours), for leak checks."""
    argv = ["nft", "-j", "list", "tables"]
    if namespace is not None:
        argv = ["ip", "netns", "exec", namespace, *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NftError(result.stderr.strip())
    return [item["table"]["name"] for item in json.loads(result.stdout).get("nftables", [])
            if "table" in item]
