"""The instances pages (instances/, instances/new/): a system admin looking
at all namespaces is asked where to create; anyone else stays in their own.
"""

from __future__ import annotations

from tests.fast.conftest import OTHER, TEAM
from tests.support.inprocess import Person


def test_all_namespaces_view_asks_where_to_create(alice: Person, bob: Person,
                                                  admin: Person) -> None:
    admin.browser.post("/namespace/", {"namespace": "*"})
    form = admin.browser.get("/instances/new/").text
    assert 'name="namespace"' in form
    assert f'<option value="{TEAM}"' in form and f'<option value="{OTHER}"' in form
    listing = admin.browser.get("/instances/").text
    assert "in all namespaces" in listing and ">Namespace<span" in listing  # a sortable column
    # "All namespaces" is for system members only: anyone else stays in their own.
    alice.browser.post("/namespace/", {"namespace": "*"})
    own = alice.browser.get("/instances/").text
    assert f"in {TEAM}" in own and "All namespaces" not in own
    create_page = alice.browser.get("/instances/new/").text
    assert 'name="namespace"' not in create_page.split("<main", 1)[1]  # past the top bar
