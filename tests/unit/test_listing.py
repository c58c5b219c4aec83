"""portal.listing: how every list reads its query string, orders, filters and
cuts pages; and how a service's refusal lands beside a form's field."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from django import forms

from cloudstate.validation import ValidationError
from portal.cloud.errors import BadRequest, Conflict
from portal.formerrors import add_refusal, split_field
from portal.listing import Filter, Listing, Ordered, OrderedCache, Query, Sort

ROWS = [{"uuid": f"u{i:03d}", "name": f"vm-{i % 7}", "size": i % 5, "colour": "blue" if i % 2
         else "red"} for i in range(23)]
LIST: Listing[dict] = Listing(
    sorts={"name": Sort("Name", lambda r: r["name"]), "size": Sort("Size", lambda r: r["size"])},
    default_sort="name",
    filters={"colour": Filter("Colour", lambda r, v: r["colour"] == v,
                              lambda rows: [(c, c) for c in sorted({r["colour"] for r in rows})])},
    search=lambda r, term: term in r["name"],
    tie=lambda r: r["uuid"],
)


def test_reading_a_query_keeps_what_makes_sense_and_says_what_does_not() -> None:
    query = LIST.read({"q": "  vm   1 ", "colour": "blue", "sort": "-size", "page": "2",
                       "per_page": "25"})
    assert (query.q, query.filters, query.sort, query.page, query.per_page) == \
        ("vm 1", (("colour", "blue"),), "-size", 2, 25)
    assert not query.errors
    bad = LIST.read({"sort": "price", "page": "two", "per_page": "7", "q": "x" * 500,
                     "colour": ["not", "a", "string"]})
    assert (bad.sort, bad.page, bad.per_page, len(bad.q)) == ("name", 1, 50, 200)
    assert set(bad.errors) == {"sort", "page", "per_page", "q"}
    assert LIST.read({"page": "-3"}).errors["page"].startswith("Pages are numbered from 1")
    assert LIST.read({"page": "１２"}).errors  # no Unicode digits


def test_pages_never_overlap_and_ties_keep_one_order() -> None:
    seen = []
    for number in (1, 2, 3):
        page = LIST.page(ROWS, Query(sort="size", page=number, per_page=10))
        seen += [row["uuid"] for row in page.rows]
        assert page.total == 23 and page.pages == 3
    assert sorted(seen) == sorted(r["uuid"] for r in ROWS) and len(set(seen)) == 23
    # Equal sizes keep the tie key's order, both ways round.
    up = [r["uuid"] for r in LIST.ordered(ROWS, Query(sort="size")) if r["size"] == 0]
    down = [r["uuid"] for r in LIST.ordered(ROWS, Query(sort="-size")) if r["size"] == 0]
    assert up == down == sorted(up)
    # Past the end is the last page.
    last = LIST.page(ROWS, Query(page=9, per_page=10))
    assert last.query.page == 3 and (last.first, last.last) == (21, 23)


def test_filters_and_search_narrow_and_links_keep_the_rest() -> None:
    query = Query(q="vm-1", filters=(("colour", "blue"),), sort="-name")
    page = LIST.page(ROWS, query)
    assert {r["name"] for r in page.rows} == {"vm-1"}
    assert all(r["colour"] == "blue" for r in page.rows)
    assert (page.total, page.in_scope) == (2, 23)
    link = parse_qs(LIST.link(query, page=2)[1:])
    assert link == {"q": ["vm-1"], "colour": ["blue"], "sort": ["-name"], "page": ["2"]}
    assert LIST.link(Query(sort="name")) == "?"  # the defaults are left out
    # A heading's link reverses the order it shows, and says which it is.
    assert LIST.sort_link(Query(sort="name"), "name") == ("?sort=-name", "ascending")
    assert LIST.sort_link(Query(sort="-name"), "name") == ("?", "descending")
    assert LIST.sort_link(Query(sort="name"), "size") == ("?sort=size", "none")
    # A chosen value no row has now is still offered (and applied).
    controls = LIST.controls(ROWS, Query(filters=(("colour", "green"),)))
    assert ("green", "green") in controls["filters"][0]["choices"]


def test_an_ordering_is_kept_until_its_version_changes() -> None:
    cache: OrderedCache[dict] = OrderedCache(size=2)
    entry = Ordered(version=7, rows=ROWS, in_scope=23, controls={})
    cache.put("a", entry)
    assert cache.get("a", 7) is entry and cache.get("a", 8) is None
    cache.put("b", entry)
    cache.get("a", 7)  # used: kept
    cache.put("c", entry)
    assert cache.get("b", 7) is None and cache.get("a", 7) is entry


class _Form(forms.Form):
    name = forms.CharField()
    networks = forms.CharField(required=False)


@pytest.mark.parametrize("refusal,field,message", [
    (ValidationError("name", '"x y" is not a valid name'), "name", '"x y" is not a valid name.'),
    (BadRequest("network[1].address: 10.0.0.1 is the router"), "networks",
     "10.0.0.1 is the router."),
    (Conflict("an instance named web already exists"), None,
     "An instance named web already exists."),
    (BadRequest("base: there is no artifact"), None, "There is no artifact."),
])
def test_a_refusal_lands_beside_its_field_in_the_portals_words(
        refusal: Exception, field: str | None, message: str) -> None:
    form = _Form({"name": "x", "networks": ""})
    assert form.is_valid()
    add_refusal(form, refusal, {"network": "networks"})  # type: ignore[arg-type]
    assert form.errors == {field or "__all__": [message]}
    assert split_field("no node can run 4 vCPUs: vm has 2 CPUs") == \
        (None, "no node can run 4 vCPUs: vm has 2 CPUs")
