"""Every SFCLOUD_ setting, declared once, and the one way to read them.

Each variable is declared here with its kind, default, one line of help and
the programs that read it; nothing else reads an SFCLOUD_ variable from the
environment. Each program calls ``check_at_start`` before it does anything,
so a value a setting does not accept (``SFCLOUD_HTTPS=ture``) stops it at
once with a message naming the variable and what it accepts, rather than
quietly meaning something else. An empty variable means its default.

An SFCLOUD_ variable that is declared nowhere only gets a warning, with the
closest declared name: it is usually a typo, but refusing it would also stop
a cloud over a variable meant for another version or tool. Secrets may be
read from a file instead, named by ``<NAME>_FILE`` (not both).

The README's settings table is generated from these declarations:

    python -m cloudstate.settings --markdown        print the table
    python -m cloudstate.settings --update-readme   rewrite it in README.md
    python -m cloudstate.settings --check           check this environment

and tests/unit/test_settings.py fails when the two differ.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import socket
import sys
from dataclasses import field
from functools import partial
from pathlib import Path
from typing import Any

from cloudstate import netvalidation, quotas
from cloudstate.settingtypes import (
    BOOL,
    ENDPOINTS,
    HOST_PORT,
    HTTPS_URL,
    IP_ADDRESS,
    IPV4_ADDRESS,
    IPV4_ADDRESSES,
    NETWORKS,
    ORIGINS,
    PATH,
    PATHS,
    PORT,
    TEXT,
    WORDS,
    Kind,
    Reader,
    Setting,
    SettingsError,
    choice,
    integer,
    number,
    pattern,
    secret,
    secret_url,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
PREFIX = "SFCLOUD_"

PORTAL, AGENT, RUNNER = Reader.PORTAL, Reader.AGENT, Reader.RUNNER
UNITS, IMAGE_BUILD, TESTS = Reader.UNITS, Reader.IMAGE_BUILD, Reader.TESTS
BOTH = (PORTAL, AGENT)


def _floating_pool(text: str) -> str:
    # The text stays the setting (both sides parse it where they use it);
    # this only refuses at start what they would refuse later.
    netvalidation.floating_network(text.strip())
    return text.strip()


FLOATING_POOL = Kind(f"an IPv4 network in CIDR form, /{netvalidation.MAX_PREFIXLEN} or larger, "
                     "e.g. 192.0.2.0/24", _floating_pool, empty="")


DEFAULT_QUOTAS = Kind("kind=amount pairs separated by commas, each kind one of "
                      + ", ".join(quotas.KINDS) + ", each amount a whole number (sizes "
                      "such as 20G for the byte kinds) or none, e.g. vcpus=32,networks=none",
                      quotas.parse_limits, empty={})


def _state_dir() -> Path:
    return read("SFCLOUD_STATE_DIR").resolve()


def _agents_address() -> str:
    return f"{read('SFCLOUD_PORTAL_ADDRESS').rpartition(':')[0]}:13002"


def _join_address() -> str:
    host, _, port = read("SFCLOUD_PORTAL_AGENTS_ADDRESS").rpartition(":")
    # An agents' listener on any free port (tests) gets a join listener likewise.
    return f"{host}:{'0' if port == '0' else '13003'}"


def _portal_origins() -> list[str]:
    address = read("SFCLOUD_PORTAL_ADDRESS")
    return [f"http://{address}", f"http://localhost:{address.rpartition(':')[2]}"]


DECLARED: tuple[Setting, ...] = (
    # --- where the cloud is --------------------------------------------------------
    Setting("SFCLOUD_STATE_DIR", PATH,
            "etcd data, the portal's database, instance disks, image cache",
            (PORTAL, AGENT, RUNNER), default=lambda: REPO_ROOT / "var",
            shown_default="`var/` in the checkout"),
    Setting("SFCLOUD_ETCD_ENDPOINTS", ENDPOINTS,
            "the etcd to use, over TLS with the cloud's certificates, e.g. "
            "`https://10.0.0.5:2379,https://10.0.0.6:2379`",
            (PORTAL, AGENT, RUNNER), default="https://127.0.0.1:23790",
            shown_default="`https://127.0.0.1:23790`, which `make run` starts when unset"),
    Setting("SFCLOUD_ETCD_PREFIX", TEXT,
            "prefix of every etcd key, so one etcd can serve several clouds",
            BOTH, default="/sfcloud"),
    Setting("SFCLOUD_ETCD_NAME", TEXT, "the member name `sfcloud-etcd.service` gives etcd",
            (UNITS,), default="sfcloud"),
    Setting("SFCLOUD_CLUSTER", TEXT,
            "this cloud's name: an agent only touches the libvirt domains that carry it",
            BOTH, default="sfcloud"),
    Setting("SFCLOUD_CLUSTER_SECRET", secret(min_length=32),
            "shared by the portals and the agents; signs what they tell each other",
            (PORTAL, AGENT, RUNNER),
            shown_default="`cluster.secret` in the state directory (`make run` makes it)"),
    Setting("SFCLOUD_PKI_DIR", PATH,
            "the cloud's CA certificate and this machine's certificates and keys "
            "(`python -m deploy.pki`); keep it private",
            (PORTAL, AGENT, RUNNER), default=lambda: _state_dir() / "pki",
            shown_default="`pki/` in the state directory (`make run` makes the CA there)"),
    Setting("SFCLOUD_CERT_RENEW_DAYS", integer(minimum=1),
            "a certificate expiring within this many days is renewed by `make run` and by "
            "`python -m deploy.pki renew`", (RUNNER,), default="30"),
    Setting("SFCLOUD_LOG_LEVEL", choice("DEBUG", "INFO", "WARNING", "ERROR"),
            "how much the portal and the agent log", BOTH, default="INFO"),
    Setting("SFCLOUD_RESYNC_INTERVAL", number(),
            "seconds between full re-reads of etcd, a safety net under the watches",
            BOTH, default="300"),
    Setting("SFCLOUD_FETCH_ALLOW", NETWORKS,
            "networks image downloads may reach beyond the public internet", BOTH),
    Setting("SFCLOUD_METRICS_TOKEN", secret(min_length=16),
            "the bearer token Prometheus sends for `/metrics` on the portal and the agents",
            BOTH, shown_default="none: `/metrics` answers 404"),

    # --- the portal ----------------------------------------------------------------
    Setting("SFCLOUD_PORTAL_ADDRESS", HOST_PORT,
            "where `make run`'s portal listens, and where its agent finds it",
            (PORTAL, AGENT, RUNNER), default="127.0.0.1:13000"),
    Setting("SFCLOUD_PORTAL_HOST", TEXT, "the address `sfcloud-portal.service` listens on",
            (UNITS,), default="127.0.0.1"),
    Setting("SFCLOUD_PORTAL_PORT", PORT, "the port `sfcloud-portal.service` listens on",
            (UNITS,), default="13000"),
    Setting("SFCLOUD_PORTAL_ORIGINS", ORIGINS,
            "exact origins browsers use (websocket Origin check, CSRF)",
            (PORTAL,), default=_portal_origins,
            shown_default="`http://` + the portal address, and `http://localhost:<its port>`"),
    Setting("SFCLOUD_PORTAL_AGENTS_ADDRESS", HOST_PORT,
            "where the portal takes its node agents' events: TLS, agents' certificates only "
            "(a second listener beside the pages')", (PORTAL, AGENT, RUNNER),
            default=_agents_address,
            shown_default="the portal address's host, port 13002"),
    Setting("SFCLOUD_PORTAL_JOIN_ADDRESS", HOST_PORT,
            "where a new machine redeems its join token: TLS with the portal's certificate "
            "(the machine pins the CA), no client certificate; a third listener",
            (PORTAL,), default=_join_address,
            shown_default="the agents' address's host, port 13003 (`0` if its port is `0`)"),
    Setting("SFCLOUD_JOIN_TOKEN_TTL", integer(minimum=60, maximum=7 * 24 * 3600),
            "seconds a join token made on the Nodes page stays valid (used once)",
            (PORTAL,), default="3600"),
    Setting("SFCLOUD_ALLOWED_HOSTS", WORDS, "Host headers the portal answers",
            (PORTAL,), default="127.0.0.1,localhost,[::1]"),
    Setting("SFCLOUD_HTTPS", BOOL, "secure cookies and HSTS, when served over HTTPS",
            (PORTAL,), default="off"),
    Setting("SFCLOUD_TLS_PROXY", BOOL,
            "behind a proxy that terminates TLS: trust its `X-Forwarded-Proto: https` "
            "(never set it without such a proxy); secure cookies and HSTS",
            (PORTAL,), default="off"),
    Setting("SFCLOUD_DEBUG", BOOL, "Django's debug pages; never on a portal others can reach",
            (PORTAL,), default="off"),
    Setting("SFCLOUD_SECRET_KEY", secret(min_length=32),
            "Django's secret key (sessions, CSRF); the same on every portal process",
            (PORTAL,), shown_default="made once, in `portal/secret_key` in the state directory"),
    Setting("SFCLOUD_DATABASE", PATH,
            "the portal's SQLite database (people, keys, sessions, events, audit trail)",
            (PORTAL,), default=lambda: _state_dir() / "portal" / "db.sqlite3",
            shown_default="`portal/db.sqlite3` in the state directory"),
    Setting("SFCLOUD_DATABASE_URL",
            secret_url(("postgres", "postgresql"), "postgresql://sfcloud:secret@db/sfcloud",
                       path_required=True),
            "PostgreSQL instead of SQLite, for several portal processes (needs `sfcloud[multi]`)",
            (PORTAL,), shown_default="none: SQLite"),
    Setting("SFCLOUD_REDIS_URL",
            secret_url(("redis", "rediss", "unix"), "redis://10.0.0.5:6379/0"),
            "Redis as the channel layer, for several portal processes (needs `sfcloud[multi]`)",
            (PORTAL,), shown_default="none: in memory, one process"),
    Setting("SFCLOUD_ADMIN_PASSWORD", secret(min_length=10),
            "the `admin` account's password, set by every `make run` (for automation)",
            (PORTAL, RUNNER), shown_default="made at the first start and printed once"),
    Setting("SFCLOUD_SYSTEM_KEY", secret(min_length=16),
            "the `system` namespace's API key, set by every `make run` (for automation)",
            (PORTAL, RUNNER), shown_default="made at the first start and printed once"),
    Setting("SFCLOUD_API_TOKEN_LIFETIME", integer(minimum=1),
            "seconds a token from `POST /api/auth` lives", (PORTAL,), default="900"),
    Setting("SFCLOUD_LOGIN_FAILURES_PER_USER", integer(minimum=1),
            "failed log-ins allowed per account within the window", (PORTAL,), default="5"),
    Setting("SFCLOUD_LOGIN_FAILURES_PER_ADDRESS", integer(minimum=1),
            "failed log-ins allowed per client address within the window",
            (PORTAL,), default="20"),
    Setting("SFCLOUD_API_KEY_FAILURES_PER_NAMESPACE", integer(minimum=1),
            "wrong keys allowed per namespace within the window (`POST /api/auth`), "
            "from all addresses together", (PORTAL,), default="50"),
    Setting("SFCLOUD_LOGIN_FAILURE_WINDOW", integer(minimum=1),
            "seconds over which failed log-ins are counted", (PORTAL,), default="900"),
    Setting("SFCLOUD_PERSONAL_TOKEN_MAX_DAYS", integer(minimum=1),
            "the longest life of a personal API token, in days", (PORTAL,), default="365"),
    Setting("SFCLOUD_EVENT_RETENTION_DAYS", integer(minimum=1),
            "how long the portal keeps events, in days", (PORTAL,), default="90"),
    Setting("SFCLOUD_AUDIT_RETENTION_DAYS", integer(minimum=0),
            "how long the portal keeps the audit trail, in days (0: forever)",
            (PORTAL,), default="365"),
    Setting("SFCLOUD_DELETED_RETENTION", integer(minimum=0),
            "seconds a deleted instance, network, artifact or blob stays readable by UUID "
            "before it is forgotten",
            (PORTAL,), default="3600"),
    Setting("SFCLOUD_JANITOR_INTERVAL", number(),
            "seconds between the portal's sweeps for deleted objects to forget (and unused "
            "blobs, expired uploads)",
            (PORTAL,), default="600"),
    Setting("SFCLOUD_UPLOAD_LIFETIME", integer(minimum=1),
            "seconds an upload may wait to be made an artifact before it is forgotten",
            (PORTAL,), default="604800"),
    Setting("SFCLOUD_CONSOLE_IDLE_TIMEOUT", integer(minimum=1),
            "seconds without input before a console closes", (PORTAL,), default="1800"),
    Setting("SFCLOUD_CONSOLE_SESSIONS_PER_USER", integer(minimum=1),
            "consoles one person may have open at once", (PORTAL,), default="6"),
    Setting("SFCLOUD_SCHEDULER", choice("spread", "pack"),
            "where a new instance goes when none is named: `spread` (the node with the most "
            "memory free) or `pack` (the fullest node it fits on)", (PORTAL,),
            default="spread"),
    Setting("SFCLOUD_CPU_OVERCOMMIT", number(),
            "virtual CPUs scheduled per real one", (PORTAL,), default="16"),
    Setting("SFCLOUD_RAM_OVERCOMMIT", number(),
            "guest memory scheduled per MiB of a node's memory", (PORTAL,), default="1.0"),
    Setting("SFCLOUD_RAM_RESERVED_MIB", integer(minimum=0),
            "memory of each node kept free for the host", (PORTAL,), default="1024"),
    Setting("SFCLOUD_DISK_RESERVED_GB", integer(minimum=0),
            "disk of each node kept free for the host", (PORTAL,), default="5"),
    Setting("SFCLOUD_DEFAULT_QUOTAS", DEFAULT_QUOTAS,
            "a new namespace's quotas, where they differ from each kind's own default "
            "(README: Quotas), e.g. `vcpus=32,image_bytes=50G,networks=none`; `system` has none",
            (PORTAL,), shown_default="each kind's own"),
    Setting("SFCLOUD_RULES_PER_SECURITY_GROUP", integer(minimum=1, maximum=1000),
            "rules one security group may have", (PORTAL,), default="100"),

    # --- the node agent ------------------------------------------------------------
    Setting("SFCLOUD_NODE_NAME", pattern(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}",
                                         "a host name: letters, digits, '.', '_', '-'"),
            "this hypervisor's name", (AGENT,), default=socket.gethostname,
            shown_default="the hostname"),
    Setting("SFCLOUD_NODE_IP", IP_ADDRESS,
            "this hypervisor's address on the network between nodes (VXLAN, the agent's server)",
            (AGENT,), default="127.0.0.1"),
    Setting("SFCLOUD_PORTAL_URL", HTTPS_URL,
            "where an agent sends its events: the portal's agents address, over TLS",
            (AGENT,), default=lambda: f"https://{read('SFCLOUD_PORTAL_AGENTS_ADDRESS')}",
            shown_default="`https://` + `SFCLOUD_PORTAL_AGENTS_ADDRESS`"),
    Setting("SFCLOUD_AGENT_PORT", integer(minimum=0, maximum=65535),
            "the agent's server (console relays, uploads, blobs for other nodes and "
            "downloads) on the node's address; `0`: any free port", (AGENT,), default="13001"),
    Setting("SFCLOUD_AGENT_WORKERS", integer(minimum=1),
            "objects an agent works on at once", (AGENT,), default="4"),
    Setting("SFCLOUD_USAGE_INTERVAL", integer(minimum=0, maximum=300),
            "seconds between the agent's samples of its node and guests for graphs and "
            "`/metrics`; `0`: no sampling", (AGENT,), default="10"),
    Setting("SFCLOUD_NODE_LEASE_TTL", integer(minimum=1),
            "seconds a node stays online after its agent last renewed its lease",
            (AGENT,), default="10"),
    Setting("SFCLOUD_LIBVIRT_URI", TEXT, "the libvirt the agent drives", (AGENT,),
            default="qemu:///system"),
    Setting("SFCLOUD_LIBVIRT_NETNS", TEXT,
            "the network namespace libvirtd makes taps in when not the agent's, "
            "e.g. `/proc/<pid>/ns/net`", (AGENT,)),
    Setting("SFCLOUD_SIMULATED_HYPERVISOR", BOOL,
            "measuring scale only: agents drive libvirt's test driver (`test:///default`, "
            "no guests run, no kernel networking) and the portal places instances only on "
            "such simulated nodes; an agent also needs `SFCLOUD_LIBVIRT_URI=test:///default`",
            BOTH, default="no"),
    Setting("SFCLOUD_VIRT_TYPE", choice("auto", "kvm", "qemu"),
            "`kvm`, `qemu` (software), or `auto`: probe by booting a test guest",
            (AGENT,), default="auto"),
    Setting("SFCLOUD_MACHINE", TEXT, "the QEMU machine type guests get", (AGENT,), default="pc"),
    Setting("SFCLOUD_DOMAIN_TEMPLATE", PATH, "your own Jinja2 domain XML template",
            (AGENT,), shown_default="built in"),
    Setting("SFCLOUD_IMAGE_CHECK_USER",
            pattern(r"[a-z_][a-z0-9_-]{0,31}", "a user name of this machine, not root"),
            "the unprivileged user `qemu-img` runs as to inspect and convert downloaded images",
            (AGENT,), default="nobody"),
    Setting("SFCLOUD_FILE_IMAGE_DIRS", PATHS,
            "directories whose files an operator may register as images (file:// blobs, "
            "such as the demo image); the agent reads no other file for a blob",
            (AGENT,), default=lambda: (read("SFCLOUD_STATE_DIR").resolve() / "cache",),
            shown_default="`cache/` in the state directory"),
    Setting("SFCLOUD_FAILPOINTS", WORDS,
            "tests only: named points where the agent exits at once (`name`) or stalls "
            "(`name:sleep=S`), to prove it converges (nodeagent/failpoints.py)",
            (AGENT, TESTS)),

    # --- networks ------------------------------------------------------------------
    Setting("SFCLOUD_FLOATING_NETWORK", FLOATING_POOL,
            "the addresses for NAT egress and floating IPs; none: no egress", BOTH),
    Setting("SFCLOUD_FLOATING_ROUTER", IPV4_ADDRESS,
            "the upstream router on the floating network", BOTH, shown_default="its first host"),
    Setting("SFCLOUD_UPLINK", TEXT,
            "on the network node: a dedicated interface towards the floating network", (AGENT,)),
    Setting("SFCLOUD_DNS_SERVERS", IPV4_ADDRESSES,
            "resolvers beyond the cloud, reached through the uplink: a network with DNS "
            "forwards other names to them, one without hands them to its guests", (AGENT,)),
    Setting("SFCLOUD_NETWORK_NODE", BOOL,
            "may hold the network node's role (the first node to start takes it; "
            "say `no` on the others)", (AGENT,), default="yes"),
    Setting("SFCLOUD_NETWORK_MTU", integer(minimum=576, maximum=9000),
            "the guests' MTU; the mesh between nodes must carry 50 bytes more",
            BOTH, default="1450"),
    Setting("SFCLOUD_VXLAN_PORT", PORT,
            "UDP port of the VXLAN mesh between the nodes' `SFCLOUD_NODE_IP`s",
            (AGENT,), default="4789"),
    Setting("SFCLOUD_NET_TAG",
            pattern(r"[a-z][a-z0-9]{1,5}", "2 to 6 lowercase letters or digits, a letter first",
                    empty=""),
            "prefix of every link and namespace the cloud makes; only these are ever removed",
            (AGENT,), shown_default="from `SFCLOUD_CLUSTER`"),

    # --- building the guest image, and the tests -----------------------------------
    Setting("SFCLOUD_BUSYBOX", PATH, "the static busybox put in the `demo` guest",
            (IMAGE_BUILD,), default="/bin/busybox"),
    Setting("SFCLOUD_KERNEL_DEB", PATH,
            "a `linux-image-*-cloud-amd64` .deb for the `demo` guest instead of downloading one",
            (IMAGE_BUILD,)),
    Setting("SFCLOUD_DEB_CACHE", PATH, "where the kernel .deb is kept between image builds",
            (IMAGE_BUILD,), shown_default="`debs/` beside the image cache"),
    Setting("SFCLOUD_TEST_CACHE", PATH,
            "where the tests keep the guest image they build once (CI: a lasting volume)",
            (TESTS,), shown_default="`var/cache`"),
    Setting("SFCLOUD_CHROMIUM", PATH, "the Chromium the browser tests drive",
            (TESTS,), default="/usr/bin/chromium"),
    # The stress suites: short in `make test`, long in `make soak`.
    Setting("SFCLOUD_SOAK", BOOL, "run the stress suites' long versions (`make soak` sets it)",
            (TESTS,), default="no"),
    Setting("SFCLOUD_STRESS_ROUNDS", integer(1),
            "rounds of each API race (`make soak`: 20)", (TESTS,), default="3"),
    Setting("SFCLOUD_FUZZ_EXAMPLES", integer(1),
            "requests the fuzzer sends to each API route and method (`make soak`: 200)",
            (TESTS,), default="8"),
    Setting("SFCLOUD_CHAOS_SEED", integer(0),
            "the seed of the agent chaos test, to replay a run it printed (0: a new one)",
            (TESTS,), default="0"),
    Setting("SFCLOUD_CHAOS_OPERATIONS", integer(1),
            "operations the agent chaos test runs while killing the agent (`make soak`: 400)",
            (TESTS,), default="40"),
    Setting("SFCLOUD_EVIDENCE_DIR", PATH,
            "where the stress suites append their figures (one JSON line each)", (TESTS,)),
)

BY_NAME: dict[str, Setting] = {declared.name: declared for declared in DECLARED}
if len(BY_NAME) != len(DECLARED):
    raise TypeError("a setting is declared twice")


# --- reading ------------------------------------------------------------------------

def read(name: str) -> Any:
    """The value of a declared setting now (the environment may have changed)."""
    try:
        declared = BY_NAME[name]
    except KeyError:
        raise LookupError(f"{name} is not declared in cloudstate/settings.py") from None
    return declared.read()


def is_set(name: str) -> bool:
    """Whether the operator gave a value (rather than the default applying)."""
    return BY_NAME[name].is_set()


def setting(name: str) -> Any:
    """A dataclass field whose default is the setting's value when the instance is made."""
    if name not in BY_NAME:  # a typo in the name fails at import, not later
        raise LookupError(f"{name} is not declared in cloudstate/settings.py")
    return field(default_factory=partial(read, name))


def check_environment() -> list[str]:
    """Read every declared setting: raise one SettingsError naming each bad one;
    return warnings about SFCLOUD_ variables nothing declares."""
    problems = []
    for declared in DECLARED:
        try:
            declared.read()
        except SettingsError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError("\n".join(problems))
    return [_unknown(name) for name in sorted(os.environ) if _is_unknown(name)]


def check_at_start(program: str) -> None:
    """Stop this program now if a setting is bad; warn about unknown ones."""
    try:
        warnings = check_environment()
    except SettingsError as exc:
        lines = str(exc).splitlines()
        raise SystemExit("\n".join(
            [f"{program}: not starting: {'a setting is' if len(lines) == 1 else 'settings are'}"
             " wrong (see README.md, Settings)"] + [f"  {line}" for line in lines])) from None
    for warning in warnings:
        print(f"{program}: warning: {warning}", file=sys.stderr, flush=True)


def _is_unknown(name: str) -> bool:
    if not name.startswith(PREFIX) or name in BY_NAME:
        return False
    base = name.removesuffix("_FILE")
    return not (base != name and base in BY_NAME and BY_NAME[base].kind.secret)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(BY_NAME), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{name} is not a setting sfcloud knows{hint}; it is ignored"


# --- the README's table -------------------------------------------------------------

TABLE_BEGIN = ("<!-- settings table: generated from cloudstate/settings.py by "
               "`python -m cloudstate.settings --update-readme` -->")
TABLE_END = "<!-- end of the settings table -->"
HEADER = "| variable | default | read by | what |\n|---|---|---|---|"


def shown_default(declared: Setting) -> str:
    if declared.shown_default:
        return declared.shown_default
    if isinstance(declared.default, str):
        return f"`{declared.default}`"
    return "none"


def markdown_row(declared: Setting) -> str:
    name = f"`{declared.name}`"
    if declared.kind.secret:
        name += " (or `_FILE`)"
    readers = ", ".join(
        f"`{r.value}`" if r is Reader.RUNNER else r.value for r in declared.readers)
    return f"| {name} | {shown_default(declared)} | {readers} | {declared.help} |"


def markdown_table() -> str:
    return "\n".join([HEADER, *(markdown_row(declared) for declared in DECLARED)])


def readme_table(text: str) -> str:
    """The generated table as it stands in the README's text."""
    match = re.search(re.escape(TABLE_BEGIN) + r"\n(.*?)\n" + re.escape(TABLE_END), text, re.S)
    if match is None:
        raise ValueError(f"README.md has no settings table between {TABLE_BEGIN} and {TABLE_END}")
    return match.group(1)


def readme_differences(text: str) -> list[str]:
    """What the README's table says otherwise than the declarations, per variable."""
    table = readme_table(text)
    rows = {}
    for line in table.splitlines():
        if match := re.match(r"\| `(SFCLOUD_[A-Z0-9_]+)`", line):
            rows[match.group(1)] = line
    problems = []
    for declared in DECLARED:
        expected = markdown_row(declared)
        if declared.name not in rows:
            problems.append(f"{declared.name} is declared but has no line in README.md")
        elif rows[declared.name] != expected:
            problems.append(f"{declared.name}: README.md says\n  {rows[declared.name]}\n"
                            f"but its declaration makes\n  {expected}")
    problems += [f"{name} is in README.md but declared nowhere"
                 for name in sorted(rows.keys() - BY_NAME.keys())]
    if not problems and table != markdown_table():
        problems.append("README.md's table has its rows in another order, or another header")
    return problems


def update_readme(path: Path = README) -> bool:
    """Rewrite the README's table from the declarations; True if it changed."""
    text = path.read_text()
    current = readme_table(text)
    if current == markdown_table():
        return False
    path.write_text(text.replace(current, markdown_table(), 1))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudstate.settings",
                                     description="sfcloud's settings")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true",
                        help="check this environment's SFCLOUD_ variables")
    action.add_argument("--markdown", action="store_true", help="print the README's table")
    action.add_argument("--update-readme", action="store_true",
                        help="rewrite the table in README.md")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table())
    elif args.update_readme:
        print("README.md updated" if update_readme() else "README.md was up to date")
    else:
        check_at_start("sfcloud")
    return 0


if __name__ == "__main__":
    sys.exit(main())
