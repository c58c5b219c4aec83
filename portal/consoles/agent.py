"""The portal's side of the hop to a node agent's server (consoles, console
logs, and storage: uploads streamed to a node, blobs streamed from one).

Over TLS only: the portal presents its certificate from the cloud's CA and
checks that the agent's (from the same CA) names the address it dials. Each
request also carries a grant signed with the cluster secret, bound to the
node, the method, the exact path and query, and good once, within seconds.
Large bodies stream both ways, as fast as the other end takes them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from django.conf import settings

from cloudstate import signing, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, AGENT_GRANT_TTL, grant_claims
from cloudstate.model import readable_node
from portal.cloud import store
from portal.cloud.errors import CloudError

CONNECT_TIMEOUT = 10.0
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


class AgentUnavailable(CloudError):
    """The instance's node is offline or its agent does not answer."""

    status = 503


class AgentRefused(CloudError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@functools.cache
def _secret() -> bytes:
    return signing.load_secret(settings.CLOUD.state_dir)


@functools.cache
def _tls() -> tls.ClientTls:
    return tls.ClientTls(tls.portal(settings.CLOUD.pki_dir))


def _http() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = _sessions[loop] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT,
                                          sock_connect=CONNECT_TIMEOUT),
            # Agents are reached directly: never through an http_proxy.
            trust_env=False,
        )
    return session


async def node_address(node: str) -> str:
    """``https://ip:port`` of the node's agent server, if the node is alive."""
    etcd, keys = store.etcd(), store.keys()
    info_kv, alive_kv = await asyncio.gather(etcd.get(keys.node(node)),
                                             etcd.get(keys.node_alive(node)))
    if info_kv is None or alive_kv is None:
        raise AgentUnavailable(f"node {node} is offline")
    info = readable_node(info_kv.key, info_kv.value)
    if info is None:
        raise AgentUnavailable(f"node {node}'s record can't be read; its agent rewrites it "
                               "when it starts")
    if not info.agent_port:
        raise AgentUnavailable(f"node {node}'s agent has no server to reach")
    host = f"[{info.ip}]" if ":" in info.ip else info.ip
    return f"https://{host}:{info.agent_port}"


def _authorization(node: str, method: str, path: str, query: dict[str, str] | None = None,
                   **extra: Any) -> dict[str, str]:
    token = signing.sign(_secret(), AGENT_GRANT_PURPOSE,
                         grant_claims(node=node, method=method, path=path, query=query,
                                      **extra),
                         AGENT_GRANT_TTL)
    return {"Authorization": f"Bearer {token}"}


async def open_websocket(node: str, path: str, **claims: Any) -> aiohttp.ClientWebSocketResponse:
    base = await node_address(node)
    try:
        return await _http().ws_connect(
            base + path, headers=_authorization(node, "GET", path, **claims),
            heartbeat=30, max_msg_size=4 * 1024 * 1024, autoping=True, ssl=_tls().current(),
        )
    except aiohttp.WSServerHandshakeError as exc:
        raise AgentRefused(exc.status, f"node {node}'s agent refused: {exc.message}") from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise AgentUnavailable(f"node {node}'s agent does not answer ({exc})") from exc


async def request(node: str, method: str, path: str, params: dict[str, str] | None = None,
                  *, data: Any = None, timeout: float = 60,
                  claims: dict[str, Any] | None = None) -> bytes:
    """Ask the agent; its answer's body, or AgentRefused with its error.
    ``data`` may be an async iterator of bytes, streamed as it yields (so a
    large body is never held whole); ``claims`` go into the grant."""
    base = await node_address(node)
    try:
        async with _http().request(
            method, base + path, params=params, data=data, ssl=_tls().current(),
            headers=_authorization(node, method, path, query=params, **(claims or {})),
            timeout=aiohttp.ClientTimeout(total=timeout, connect=CONNECT_TIMEOUT),
        ) as response:
            body = await response.read()
            if response.status != 200:
                raise AgentRefused(response.status, _error_text(body))
            return body
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise AgentUnavailable(f"node {node}'s agent does not answer ({exc})") from exc


async def open_stream(node: str, path: str, headers: dict[str, str] | None = None,
                      ) -> tuple[int, dict[str, str], AsyncIterator[bytes]]:
    """GET a (large) body from the agent: its status, headers and an
    iterator over it that reads only as fast as it is consumed, and lets
    the connection go when finished or closed."""
    base = await node_address(node)
    try:
        response = await _http().request(
            "GET", base + path, headers={**(headers or {}), **_authorization(node, "GET", path)},
            ssl=_tls().current(),
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT,
                                          sock_read=CONNECT_TIMEOUT * 6))
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise AgentUnavailable(f"node {node}'s agent does not answer ({exc})") from exc
    if response.status not in (200, 206):
        body = await response.read()
        response.release()
        raise AgentRefused(response.status, _error_text(body))

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_chunked(256 * 1024):
                yield chunk
        finally:
            response.release()

    return response.status, dict(response.headers), body()


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:200]
