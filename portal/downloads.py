"""A blob's bytes as an HTTP response, the same for the API and the pages.

Shaken Fist's client asks with ``offset`` and ``limit`` query parameters
and accepts only 200; browsers and download tools send a ``Range`` header
and expect 206 (or 416 outside the blob). Either way the bytes stream from
a node holding them as fast as the client reads them: nothing is held
whole in the portal.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from cloudstate.validation import shown
from portal.cloud import blobs
from portal.cloud.catalogue import BlobRecord
from portal.cloud.errors import BadRequest
from portal.consoles.agent import AgentRefused

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


def _whole_number(request: HttpRequest, name: str) -> int:
    raw = request.GET.get(name, "0") or "0"
    if not raw.isdigit():
        raise BadRequest(f"{name}: must be a whole number of bytes, not {shown(raw)}")
    return int(raw)


def wanted_range(request: HttpRequest, size: int) -> tuple[blobs.ByteRange | None, bool]:
    """(the bytes asked for, or None for all of them; whether a Range
    header asked). RangeNotSatisfiable for a range outside the blob."""
    header = request.headers.get("Range")
    if header:
        match = _RANGE.fullmatch(header.strip())
        if match is None or match.group(1) == match.group(2) == "":
            raise RangeNotSatisfiable(size)
        first, last = match.groups()
        if first == "":  # the last N bytes
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start >= size or end < start:
            raise RangeNotSatisfiable(size)
        return blobs.ByteRange(start, end), True
    offset, limit = _whole_number(request, "offset"), _whole_number(request, "limit")
    if offset == 0 and limit == 0:
        return None, False
    end = min(offset + limit, size) - 1 if limit else size - 1
    return blobs.ByteRange(offset, end), False


def _not_satisfiable(size: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message, "status": 416}, status=416)
    response["Content-Range"] = f"bytes */{size}"
    return response


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


async def response(request: HttpRequest, record: BlobRecord, *,
                   filename: str | None = None) -> HttpResponseBase:
    """The response carrying ``record``'s bytes (those asked for);
    ``filename`` makes a browser save them."""
    size = record.facts.size or 0
    try:
        wanted, ranged = wanted_range(request, size)
    except RangeNotSatisfiable as exc:
        return _not_satisfiable(exc.size, f"the blob has {exc.size} bytes; that range is "
                                          "outside it")
    if wanted is not None and wanted.start >= size:
        # Past the end: nothing, as Shaken Fist answers.
        return StreamingHttpResponse(_nothing(), content_type="application/octet-stream")
    try:
        found = await blobs.read(record, wanted)
    except AgentRefused as exc:
        if exc.status == 416:
            return _not_satisfiable(size, exc.message)
        raise
    streamed = StreamingHttpResponse(found.chunks, content_type="application/octet-stream",
                                     status=206 if ranged else 200)
    if found.length is not None:
        streamed["Content-Length"] = str(found.length)
    if ranged and found.content_range:
        streamed["Content-Range"] = found.content_range
    streamed["Accept-Ranges"] = "bytes"
    if filename:
        safe = re.sub(r'[^A-Za-z0-9._-]+', "-", filename).strip("-.") or record.uuid
        streamed["Content-Disposition"] = f'attachment; filename="{safe}"'
    return streamed
