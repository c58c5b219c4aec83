"""The portal's side of the hop to a node agent's server.

Over TLS only: the portal presents its certificate from the cloud's CA and
checks that the agent's (from the same CA) names the address it dials. Each
request also carries a grant signed with the cluster secret, bound to the
node, the method, the exact path and query, and good once, within seconds.
"""

from __future__ import annotations

import asyncio
import functools
import json
import weakref
from typing import Any

import aiohttp
from django.conf import settings

from cloudstate import signing, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, AGENT_GRANT_TTL, grant_claims
from cloudstate.model import NodeInfo
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
    info = NodeInfo.from_json(info_kv.value)
    if not info.agent_port:
        raise AgentUnavailable(f"node {node}'s agent offers no console service")
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


async def request(node: str, method: str, path: str, params: dict[str, str] | None = None) -> bytes:
    base = await node_address(node)
    try:
        async with _http().request(
            method, base + path, params=params,
            headers=_authorization(node, method, path, query=params), ssl=_tls().current(),
            timeout=aiohttp.ClientTimeout(total=60, connect=CONNECT_TIMEOUT),
        ) as response:
            body = await response.read()
            if response.status != 200:
                raise AgentRefused(response.status, _error_text(body))
            return body
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise AgentUnavailable(f"node {node}'s agent does not answer ({exc})") from exc


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:200]
