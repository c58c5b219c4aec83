"""GET /api: what this server is and what it can do.

Shaken Fist's client reads this page and looks for capability names in it
by substring, so it must only ever name what is really implemented.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from portal.api.framework import endpoint

# Each name is one Shaken Fist's client looks for (by substring, anywhere on
# the page) before it uses a route; a name here is a promise that the route
# works. Never add one for a route that is missing: the in-guest agent's
# routes (files to and from a guest, commands, screenshots) and asynchronous
# network deletes are not offered, so their names must not appear at all.
CAPABILITIES: dict[str, list[str]] = {
    # POST /instances/<ref>/interfaces; GET /instances/<ref> ignores a namespace in its body.
    "instances": ["hot-plug-interface", "get-instance-namespace"],
    # GET /nodes/<name>, and node metadata.
    "nodes": ["node-get", "node-metadata"],
    # GET .../events honours event_type and limit.
    "events": ["events-by-type"],
    "networks": ["provide-dns", "list-addresses", "route-addresses", "extra-dns-entries",
                 "get-network-namespace"],
    "artifacts": ["artifact-metadata"],
    # GET /blob_checksums/sha512/<hash>; GET /blobs/<uuid>/data with offset and limit.
    "blobs": ["blob-metadata", "blob-search-by-hash", "blob-data-limit", "blob-events"],
    # Stateful allow-list firewalls on every interface (sfcloud's own API).
    "security-groups": ["security-groups", "address-sets", "port-security"],
}

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sfcloud API</title></head>
<body><h1>sfcloud</h1>
<p>This is the JSON API of an sfcloud cloud. It speaks Shaken Fist's REST dialect:
set SHAKENFIST_API_URL to this address and use sf-client.</p>
<h2>Machine searchable API capabilities</h2>
<ul>
{items}
</ul></body></html>
"""


def page() -> str:
    items = "\n".join(
        f"<li>{group}: {', '.join(names)}</li>" for group, names in CAPABILITIES.items()
    )
    return _PAGE.format(items=items)


@endpoint("GET", authenticated=False)
async def root(request: HttpRequest, body: dict) -> HttpResponse:
    return HttpResponse(page(), content_type="text/html; charset=utf-8")
