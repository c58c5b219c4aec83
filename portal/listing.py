"""One way for every list page to search, filter, sort and page.

A Listing describes a kind of row: the sorts it offers (each a key), the
filters (each a set of choices and a test), and what a search matches. A
page's query string is read by ``Listing.read`` into a Query (a value that
makes no sense is reported beside its control and the default used: a query
string never makes a 5xx), and ``Listing.page`` applies it to the rows and
cuts out one page. Only that page is rendered, so the cost of a list page is
one pass over the rows in memory (the live hub's mirror for instances) plus
one page of markup, however long the list.

The same Query is what a list's websocket is opened with (its query
string), so the live updates are those of the page the person looks at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")

PER_PAGE_CHOICES = (25, 50, 100, 200)
DEFAULT_PER_PAGE = 50
MAX_SEARCH = 200


@dataclass(frozen=True)
class Sort(Generic[T]):
    label: str
    key: Callable[[T], Any]  # ascending; ties are broken by the listing's own tie key
    up: str = "A to Z"  # how the ascending order reads ("oldest first")
    down: str = "Z to A"


@dataclass(frozen=True)
class Filter(Generic[T]):
    label: str
    # Whether a row passes when the filter has this value.
    test: Callable[[T, str], bool]
    # The values offered, as (value, label), worked out from the rows in scope.
    choices: Callable[[Sequence[T]], list[tuple[str, str]]]


@dataclass(frozen=True)
class Query:
    """What a list page was asked for (all of it valid)."""

    q: str = ""
    filters: tuple[tuple[str, str], ...] = ()
    sort: str = ""  # a sort's name, "-" in front for descending
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    # Parameter -> what was wrong with the value given (the default was used).
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def filter_values(self) -> dict[str, str]:
        return dict(self.filters)

    @property
    def narrowed(self) -> bool:
        """Whether a search or filter leaves rows out."""
        return bool(self.q or self.filters)

    def params(self, default_sort: str, **changes: Any) -> dict[str, str]:
        """The query string's parameters (the defaults left out), with changes."""
        values: dict[str, Any] = {"q": self.q, **self.filter_values, "sort": self.sort,
                                  "page": self.page, "per_page": self.per_page}
        values.update(changes)
        defaults = {"q": "", "sort": default_sort, "page": 1, "per_page": DEFAULT_PER_PAGE}
        return {name: str(value) for name, value in values.items()
                if value not in ("", None) and defaults.get(name) != value}


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    total: int  # rows matching the query, on every page
    in_scope: int  # rows before the search and filters
    query: Query
    pages: int

    @property
    def first(self) -> int:
        return 0 if not self.rows else (self.query.page - 1) * self.query.per_page + 1

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


@dataclass(frozen=True)
class Listing(Generic[T]):
    sorts: Mapping[str, Sort[T]]
    default_sort: str
    filters: Mapping[str, Filter[T]]
    search: Callable[[T, str], bool]
    tie: Callable[[T], Any]  # a stable last key (a uuid), so pages never overlap
    search_help: str = ""

    # --- reading a query ------------------------------------------------------------------

    def read(self, params: Mapping[str, Any]) -> Query:
        """The query in ``params`` (a QueryDict or a dict of strings)."""
        errors: dict[str, str] = {}

        def one(name: str) -> str:
            value = params.get(name, "")
            return value if isinstance(value, str) else ""

        q = " ".join(one("q").split())
        if len(q) > MAX_SEARCH:
            errors["q"] = f"Searches are at most {MAX_SEARCH} characters; this one was cut."
            q = q[:MAX_SEARCH]
        filters = []
        for name in self.filters:
            value = one(name).strip()
            if value:
                if len(value) > MAX_SEARCH:
                    errors[name] = "That is not one of the choices."
                else:
                    filters.append((name, value))
        sort = one("sort") or self.default_sort
        if sort.removeprefix("-") not in self.sorts:
            errors["sort"] = "That is not a way this list can be sorted; it is sorted as usual."
            sort = self.default_sort
        per_page = _whole(one("per_page"), DEFAULT_PER_PAGE)
        if per_page not in PER_PAGE_CHOICES:
            errors["per_page"] = (f"Show {', '.join(map(str, PER_PAGE_CHOICES[:-1]))} or "
                                  f"{PER_PAGE_CHOICES[-1]} a page.")
            per_page = DEFAULT_PER_PAGE
        page = _whole(one("page"), 1)
        if page < 1:
            errors["page"] = "Pages are numbered from 1; this is the first."
            page = 1
        return Query(q=q, filters=tuple(filters), sort=sort, page=page, per_page=per_page,
                     errors=errors)

    # --- applying it ----------------------------------------------------------------------

    def matches(self, row: T, query: Query) -> bool:
        for name, value in query.filters:
            if not self.filters[name].test(row, value):
                return False
        return not query.q or self.search(row, query.q.casefold())

    def _sort(self, query: Query) -> tuple[Sort[T], bool]:
        """The query's sort (the default if it names none) and whether it is descending."""
        name = query.sort or self.default_sort
        return self.sorts[name.removeprefix("-")], name.startswith("-")

    def sort_key(self, row: T, query: Query) -> Any:
        return self._sort(query)[0].key(row)

    def ordered(self, rows: Iterable[T], query: Query) -> list[T]:
        """Every row that matches, in the query's order."""
        found = [row for row in rows if self.matches(row, query)] if query.narrowed \
            else list(rows)
        sort, descending = self._sort(query)
        # Two stable passes: the tie key always ascending, the sort either way.
        found.sort(key=self.tie)
        found.sort(key=sort.key, reverse=descending)
        return found

    def page(self, rows: Sequence[T], query: Query) -> Page[T]:
        return self.cut(self.ordered(rows, query), len(rows), query)

    def cut(self, ordered: Sequence[T], in_scope: int, query: Query) -> Page[T]:
        """The query's page of rows already matched and ordered."""
        pages = max(1, math.ceil(len(ordered) / query.per_page))
        if query.page > pages:
            # Past the end (rows went, or a typed number): the last page instead.
            query = Query(q=query.q, filters=query.filters, sort=query.sort, page=pages,
                          per_page=query.per_page, errors=query.errors)
        start = (query.page - 1) * query.per_page
        return Page(rows=list(ordered[start:start + query.per_page]), total=len(ordered),
                    in_scope=in_scope, query=query, pages=pages)

    # --- what the page's controls need -------------------------------------------------------

    def controls(self, rows: Sequence[T], query: Query, *,
                 sort_choices: Sequence[str] | None = None) -> dict[str, Any]:
        """The template context of components/list_controls.html and
        components/pager.html."""
        values = query.filter_values
        filters = []
        for name, spec in self.filters.items():
            choices = spec.choices(rows)
            chosen = values.get(name, "")
            if chosen and chosen not in {value for value, _ in choices}:
                # Still applied (it may match rows that come later); still shown.
                choices = [*choices, (chosen, chosen)]
            filters.append({"name": name, "label": spec.label, "value": chosen,
                            "choices": choices, "error": query.errors.get(name, "")})
        sorts = []
        for name in sort_choices or list(self.sorts):
            spec = self.sorts[name]
            sorts.extend([(name, f"{spec.label}, {spec.up}"),
                          (f"-{name}", f"{spec.label}, {spec.down}")])
        return {
            "q": query.q, "search_help": self.search_help, "filters": filters,
            "sort": query.sort, "sort_choices": sorts, "per_page": query.per_page,
            "per_page_choices": PER_PAGE_CHOICES, "errors": query.errors,
            "narrowed": query.narrowed,
        }

    def page_context(self, page: Page[T]) -> dict[str, Any]:
        """What a list's live parts (rows, count, pager, empty state) need:
        the page and links that keep the rest of the query."""
        query = page.query
        return {
            "page": page,
            "rows": page.rows,
            "previous_link": self.link(query, page=query.page - 1) if query.page > 1 else "",
            "next_link": self.link(query, page=query.page + 1) if query.page < page.pages
            else "",
            "clear_link": self.link(Query(sort=query.sort, per_page=query.per_page)),
        }

    def view_context(self, rows: Sequence[T], page: Page[T],
                     controls: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything a list page's template needs from the listing: the
        page (as page_context), its controls (worked out from ``rows`` unless
        given), its sortable headings and the query its websocket is opened
        with."""
        return {
            **self.page_context(page),
            "controls": controls if controls is not None else self.controls(rows, page.query),
            "sort_links": {name: self.sort_link(page.query, name) for name in self.sorts},
            "ws_query": urlencode(page.query.params(self.default_sort)),
        }

    def link(self, query: Query, **changes: Any) -> str:
        """A query string (with its "?") for this list with ``changes``."""
        params = query.params(self.default_sort, **changes)
        return "?" + urlencode(params) if params else "?"

    def sort_link(self, query: Query, name: str) -> tuple[str, str]:
        """(the link that sorts by ``name``, the column's aria-sort now)."""
        current = query.sort.removeprefix("-")
        descending = query.sort.startswith("-")
        if current == name:
            wanted, state = (name if descending else f"-{name}"), \
                ("descending" if descending else "ascending")
        else:
            wanted, state = name, "none"
        return self.link(query, sort=wanted, page=1), state


def _whole(text: str, default: int) -> int:
    text = text.strip()
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return -1
    return int(text)


@dataclass
class Ordered(Generic[T]):
    """A query's matching rows in order, and its controls' choices, as of a version of the
    rows (the live hub's mirror revision)."""

    version: int
    rows: list[T]
    in_scope: int
    controls: dict[str, Any]


class OrderedCache(Generic[T]):
    """The last few queries' ordered rows, kept while the rows' version holds: the next page,
    a reload, or fifty people on the same list cost a slice, not a sort of everything."""

    def __init__(self, size: int = 32):
        self.size = size
        self._kept: dict[Any, Ordered[T]] = {}

    def get(self, key: Any, version: int) -> Ordered[T] | None:
        found = self._kept.get(key)
        if found is None or found.version != version:
            return None
        self._kept[key] = self._kept.pop(key)  # most recently used last
        return found

    def put(self, key: Any, entry: Ordered[T]) -> None:
        self._kept.pop(key, None)
        self._kept[key] = entry
        while len(self._kept) > self.size:
            del self._kept[next(iter(self._kept))]
