"""The audit trail page (manage/audit/): changes and refusals from every
door are recorded and can be filtered; a namespace admin reads only their
own namespace's trail.
"""

from __future__ import annotations

import secrets

from tests.fast.conftest import TEAM
from tests.support.inprocess import InProcessPortal, Person
from tests.support.objects import put_instance


def test_audit_trail_records_changes_and_filters(
        portal: InProcessPortal, viewer: Person, bob: Person, admin: Person) -> None:
    api = portal.api()
    key = secrets.token_urlsafe(16)
    assert api.post(f"/auth/namespaces/{TEAM}/keys", {"key_name": "audited", "key": key}
                    ).status_code == 200
    uuid = put_instance(portal, TEAM, "audited-vm")
    assert api.delete(f"/instances/{uuid}").status_code == 200
    assert api.delete(f"/auth/namespaces/{TEAM}/keys/audited").status_code == 200
    assert api.delete("/auth/namespaces/system").status_code == 403
    assert viewer.api(TEAM).delete(f"/instances/{uuid}").status_code == 403

    def rows(**filters: str) -> list[str]:
        page = admin.browser.get("/manage/audit/", filters)
        assert page.status_code == 200
        body = page.text.split('<tbody>', 1)[1].split('</tbody>', 1)[0]
        return [r for r in body.split("<tr")[1:] if "Nothing matches" not in r]

    mine = rows(namespace=TEAM)
    assert len(mine) >= 5
    deleted = rows(namespace=TEAM, action="delete", object=uuid)
    assert len(deleted) == 2  # the system key's, and the viewer's refused attempt
    assert any('data-outcome="denied"' in r and viewer.username in r for r in deleted)
    assert any('data-outcome="ok"' in r and "key system/admin" in r for r in deleted)
    assert len(rows(namespace=TEAM, object="key", action="create")) == 1
    assert len(rows(actor=viewer.username, namespace=TEAM, outcome="denied")) == 1
    assert any("the system namespace cannot be deleted" in r
               for r in rows(namespace="system", action="delete", object="namespace"))
    assert rows(namespace=TEAM, since="2000-01-01", until="2000-01-02") == []
    assert "127.0.0.1" in rows(namespace=TEAM, action="delete", object=uuid)[0]
    # A namespace admin reads their own namespace's trail, nobody else's.
    badmin_view = bob.browser.get("/manage/audit/", {"namespace": TEAM})
    assert "audited-vm" not in badmin_view.text
