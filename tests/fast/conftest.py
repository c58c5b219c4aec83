"""The fast tier: the portal's pages, API routes and websockets in this
process (tests.support.inprocess), over the session's real etcd with a key
prefix per test and the test database, emptied after each test.

No libvirt, no agent process, no guest: a test that needs a node or an
instance's observed state asks for ``agent``, which writes what an agent
would report (tests.support.fakeagent). Every test here is marked ``fast``.

Named people, as the tests call them:

- ``alice``: member of ``team`` (changes what is in it);
- ``viewer``: viewer of ``team`` (reads it, changes nothing);
- ``bob``: admin of ``other`` (a stranger to ``team``);
- ``admin``: the cloud's admin (bootstrap's superuser, admin of ``system``).

``portal.api()`` is the system namespace's key, as ``make run`` makes it.
"""

from __future__ import annotations

import contextlib
import io
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection
from django.test import override_settings
from django.test.utils import setup_databases, teardown_databases

from deploy.localetcd import LocalEtcd
from portal.accounts.management.commands.bootstrap import register_demo_image
from tests.support.fakeagent import FakeAgent
from tests.support.fixtures_etcd import portal_cloud_settings
from tests.support.inprocess import InProcessPortal, Person, running_portal
from tests.support.networld import FLOATING_NETWORK, FLOATING_ROUTER

TEAM, OTHER = "team", "other"
FAST_DIR = Path(__file__).parent
# The database settings name before any test database replaces it.
CONFIGURED_DATABASE = connection.settings_dict["NAME"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if FAST_DIR not in Path(item.path).parents:
            continue
        if item.get_closest_marker("integration") or item.get_closest_marker("e2e"):
            raise pytest.UsageError(f"{item.nodeid} is in the fast tier (tests/fast) but marked "
                                    "integration or e2e: move it to tests/integration or e2e/")
        item.add_marker(pytest.mark.fast)


@contextlib.contextmanager
def bootstrapped_portal(etcd_server: LocalEtcd) -> Iterator[InProcessPortal]:
    """The portal as ``make run`` leaves it: bootstrapped, with the floating
    network the network tests' cloud has (never routed anywhere); no nodes.
    The database must be open."""
    prefix = f"/fast-{secrets.token_hex(6)}"
    system_key, admin_password = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
    cluster_secret = secrets.token_urlsafe(48)
    cloud = portal_cloud_settings(etcd_server, prefix, floating_network=FLOATING_NETWORK,
                                  floating_router=FLOATING_ROUTER)
    with pytest.MonkeyPatch.context() as env, override_settings(
            CLOUD=cloud,
            # The production hasher costs a third of a second per password.
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        for name, value in (("SFCLOUD_SYSTEM_KEY", system_key),
                            ("SFCLOUD_ADMIN_PASSWORD", admin_password),
                            ("SFCLOUD_CLUSTER_SECRET", cluster_secret),
                            # Image URLs on loopback (the tests' own servers) may be fetched.
                            ("SFCLOUD_FETCH_ALLOW", "127.0.0.0/8")):
            env.setenv(name, value)
        call_command("bootstrap", stdout=io.StringIO())
        with running_portal(prefix, system_key, admin_password,
                            cluster_secret) as running:
            yield running


@pytest.fixture
def portal(etcd_server: LocalEtcd, transactional_db: None) -> Iterator[InProcessPortal]:
    """The portal of this test; the database is emptied after it."""
    with bootstrapped_portal(etcd_server) as running:
        yield running


@pytest.fixture(scope="session")
def session_database(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The test database, for fixtures wider than a test. pytest-django makes
    it only when some test of the session asks for a database by fixture or
    marker (a module-scoped fixture can't); otherwise it is made here."""
    if connection.settings_dict["NAME"] != CONFIGURED_DATABASE:
        yield  # pytest-django made it
        return
    with django_db_blocker.unblock():
        made = setup_databases(verbosity=0, interactive=False, aliases={DEFAULT_DB_ALIAS})
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            teardown_databases(made, verbosity=0)


@pytest.fixture(scope="module")
def module_portal(etcd_server: LocalEtcd, session_database: None,
                  django_db_blocker: Any) -> Iterator[InProcessPortal]:
    """One portal for a whole module, for tests that share a world made once
    (as the real server would hold it); the database is emptied after the
    module."""
    with django_db_blocker.unblock():
        try:
            with bootstrapped_portal(etcd_server) as running:
                yield running
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def agent(portal: InProcessPortal) -> FakeAgent:
    """A fake agent at the etcd boundary: its node is registered (hypervisor
    and network node), and the test has it write the observed records an
    agent would (an instance created and running, a network built, an
    instance torn down). Nothing runs on it; real agents are tried in
    tests/integration."""
    return FakeAgent(portal).register()


@pytest.fixture
def demo_image(portal: InProcessPortal, tmp_path: Path) -> str:
    """The shared image ``demo`` that ``make run`` registers (its file is
    never read: nothing fetches it); returns its UUID."""
    portal.loop.run(register_demo_image(tmp_path / "demo.qcow2"))
    return portal.api().get("/artifacts/demo").json()["uuid"]


@pytest.fixture
def alice(portal: InProcessPortal) -> Person:
    return portal.person("alice", {TEAM: "member"})


@pytest.fixture
def viewer(portal: InProcessPortal) -> Person:
    return portal.person("viewer", {TEAM: "viewer"})


@pytest.fixture
def bob(portal: InProcessPortal) -> Person:
    return portal.person("bob", {OTHER: "admin"})


@pytest.fixture
def admin(portal: InProcessPortal) -> Person:
    return portal.existing_person("admin", portal.admin_password)
