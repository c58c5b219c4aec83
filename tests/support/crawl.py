"""Reading the portal's pages as a browser without JavaScript would: the links
to follow, the forms to send (with their fields), and what an answer says
about a form sent back (its errors and what it kept). The crawl test
(tests/fast/test_crawl.py) drives it; stdlib's HTML parser is enough.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit


@dataclass
class Field:
    name: str
    kind: str  # text, textarea, select, checkbox, hidden, password, number, file, ...
    value: str = ""
    options: list[str] = field(default_factory=list)
    checked: bool = False
    element_id: str = ""
    maxlength: int | None = None

    @property
    def editable(self) -> bool:
        return self.kind not in ("hidden", "submit", "button")


@dataclass
class Form:
    action: str
    method: str
    fields: list[Field] = field(default_factory=list)
    htmx: bool = False  # posted by htmx (hx-post) where JavaScript runs

    @property
    def editable(self) -> list[Field]:
        return [f for f in self.fields if f.editable]


class _PageParser(HTMLParser):
    def __init__(self, base: str):
        super().__init__(convert_charrefs=True)
        self.base = base
        self.links: list[str] = []
        self.forms: list[Form] = []
        # Controls outside their form name it (form="bulk-form").
        self.by_id: dict[str, Form] = {}
        self.loose: list[tuple[str, Field]] = []
        self._form: Form | None = None
        self._select: Field | None = None
        self._textarea: Field | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and "href" in a and "download" not in a:
            self.links.append(urljoin(self.base, a["href"]))
        elif tag == "form":
            action = urljoin(self.base, a.get("action") or a.get("hx-post") or self.base)
            self._form = Form(action=action, method=(a.get("method") or "get").lower(),
                              htmx="hx-post" in a)
            if self._form.htmx and "method" not in a:
                self._form.method = "post"
            self.forms.append(self._form)
            if a.get("id"):
                self.by_id[a["id"]] = self._form
        elif tag in ("input", "select", "textarea", "button") and a.get("name"):
            kind = a.get("type", "text") if tag == "input" else tag
            if tag == "button":
                kind = "button"
            length = a.get("maxlength", "")
            control = Field(name=a["name"], kind=kind, value=a.get("value", ""),
                            checked="checked" in a, element_id=a.get("id", ""),
                            maxlength=int(length) if length.isdigit() else None)
            owner = a.get("form")
            if owner:
                self.loose.append((owner, control))
            elif self._form is not None:
                self._form.fields.append(control)
            if tag == "select":
                control.value = ""
                self._select = control
            elif tag == "textarea":
                self._textarea = control
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self._select.options.append(value)
            if "selected" in a:
                self._select.value, self._select.checked = value, True

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea.value += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select is not None:
            if not self._select.checked:  # a browser sends the first option
                self._select.value = self._select.options[0] if self._select.options else ""
            self._select = None
        elif tag == "textarea":
            self._textarea = None


@dataclass
class Page:
    url: str
    links: list[str]
    forms: list[Form]


def read_page(url: str, text: str) -> Page:
    parser = _PageParser(url)
    parser.feed(text)
    for owner, control in parser.loose:
        if owner in parser.by_id:
            parser.by_id[owner].fields.append(control)
    return Page(url=url, links=parser.links, forms=parser.forms)


def same_site(url: str, origin: str) -> bool:
    parts = urlsplit(url)
    return (not parts.netloc or f"{parts.scheme}://{parts.netloc}" == origin) \
        and parts.scheme in ("", "http", "https")


# --- what a form sent back says ------------------------------------------------------------

_FIELD_ERROR = re.compile(r'<ul class="errorlist" id="([\w-]+)_error">(.*?)</ul>', re.S)
_NONFIELD = re.compile(r'<ul class="errorlist nonfield">(.*?)</ul>', re.S)
_ITEM = re.compile(r"<li>(.*?)</li>", re.S)


def field_errors(text: str) -> dict[str, list[str]]:
    """Control id -> its error messages."""
    return {found.group(1): [html.unescape(i) for i in _ITEM.findall(found.group(2))]
            for found in _FIELD_ERROR.finditer(text)}


def nonfield_errors(text: str) -> list[str]:
    return [html.unescape(i) for block in _NONFIELD.findall(text) for i in _ITEM.findall(block)]


def marked_invalid(text: str, element_id: str) -> bool:
    """Whether the control with this id says it is invalid and points at its error, or (a
    group of checkboxes) its fieldset points at it."""
    tag = re.search(rf'<(?:input|select|textarea)[^>]*\bid="{re.escape(element_id)}"[^>]*>',
                    text)
    if tag is not None:
        return 'aria-invalid="true"' in tag.group(0) and f"{element_id}_error" in tag.group(0)
    group = re.search(rf'<fieldset[^>]*aria-describedby="[^"]*\b{re.escape(element_id)}_error\b',
                      text)
    return group is not None
