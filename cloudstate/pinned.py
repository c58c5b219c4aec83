"""An aiohttp resolver that knows one host and only the addresses already
checked for it (cloudstate.urlguard), so a connection can't resolve the
name a second time and be sent somewhere else (DNS rebinding)."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from cloudstate.urlguard import IPAddress


class PinnedResolver(AbstractResolver):
    """Answers only for the checked host, with only the checked addresses, so
    aiohttp cannot resolve the name a second time and get another answer."""

    def __init__(self, host: str, addresses: list[IPAddress]):
        self._host = host
        self._addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host.lower() != self._host:
            raise OSError(f"{host} was not checked before connecting")
        results: list[ResolveResult] = []
        for address in self._addresses:
            addr_family = socket.AF_INET if address.version == 4 else socket.AF_INET6
            if family in (socket.AF_INET, socket.AF_INET6) and family != addr_family:
                continue
            results.append({"hostname": host, "host": str(address), "port": port,
                            "family": addr_family, "proto": 0,
                            "flags": socket.AI_NUMERICHOST})
        if not results:
            raise OSError(f"{host} has no checked address of the wanted family")
        return results

    async def close(self) -> None:
        pass
