"""The live instance list (ws/instances/): it delivers only what each person
may see, and closes at once when they lose access.

The live hub watches etcd on the portal's loop, as it does in the server.
"""

from __future__ import annotations

import pytest

from tests.fast.conftest import OTHER, TEAM
from tests.support.inprocess import Closed, InProcessPortal, Person, Socket
from tests.support.objects import put_instance


def messages_until(ws: Socket, marker: str, timeout: float = 20) -> list[str]:
    """Everything the socket delivers up to and including a message holding ``marker``."""
    seen = []
    while True:
        message = ws.recv(timeout=timeout)
        seen.append(message)
        if marker in message:
            return seen


def test_live_list_delivers_only_what_each_person_may_see(
        portal: InProcessPortal, alice: Person, bob: Person, admin: Person) -> None:
    alice.browser.post("/namespace/", {"namespace": TEAM})
    bob.browser.post("/namespace/", {"namespace": OTHER})
    admin.browser.post("/namespace/", {"namespace": "*"})  # All namespaces
    with alice.browser.socket("/ws/instances/") as ws_a, \
            bob.browser.socket("/ws/instances/") as ws_b, \
            admin.browser.socket("/ws/instances/") as ws_all:
        for ws in (ws_a, ws_b, ws_all):
            assert 'id="instance-rows"' in ws.recv(timeout=10)
        in_a = put_instance(portal, TEAM, "live-a")
        in_b = put_instance(portal, OTHER, "live-b")
        assert any(in_a in m for m in messages_until(ws_a, in_a))
        everything = messages_until(ws_all, in_b)
        assert any(in_a in m for m in everything)
        # Everything's rows carry the namespace column.
        assert any(f'<td data-label="Namespace">{OTHER}</td>' in m for m in everything)
        # B's admin got B's row, and nothing of A's before it or with it.
        assert not any(in_a in m for m in messages_until(ws_b, in_b))
        # ...nor after it: a later change in B is the next thing B sees.
        assert portal.api().delete(f"/instances/{in_a}").status_code == 200
        marker = put_instance(portal, OTHER, "live-b2")
        assert not any(in_a in m for m in messages_until(ws_b, marker))


def test_losing_access_closes_the_live_socket_at_once(
        portal: InProcessPortal, alice: Person, admin: Person) -> None:
    in_a = put_instance(portal, TEAM, "watched")
    with alice.browser.socket("/ws/instances/") as ws:
        assert in_a in ws.recv(timeout=10)
        removed = admin.browser.post(
            f"/manage/namespaces/{TEAM}/members/{alice.user_id}/remove/", {}, htmx=True)
        assert removed.status_code == 200 and alice.username not in removed.text
        with pytest.raises(Closed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.code == 4403
    # Reconnecting works out again what they may see: now nothing.
    with alice.browser.socket("/ws/instances/") as ws:
        assert in_a not in ws.recv(timeout=10)
    assert alice.browser.get(f"/instances/{in_a}/").status_code == 404
