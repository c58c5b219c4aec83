"""``python -m tests.support.netnsrelay NETNS_PATH PORT [PORT...]``: make
127.0.0.1:PORT of the root namespace reachable as 127.0.0.1:PORT inside
another namespace, for each PORT.

A node agent running in a simulated host's namespace talks to etcd and the
portal on its own loopback; this relay listens there and connects out from
the root namespace, where they listen. A socket belongs to the namespace its
thread was in when it was made, so one process can hold both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import sys
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def inside(netns_path: str) -> Iterator[None]:
    """This thread in the network namespace at ``netns_path`` for the block
    (sockets made there stay there), and back home afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns_path} failed")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home failed")
    finally:
        os.close(home)
        os.close(target)


def _listen_in(netns_path: str, port: int) -> socket.socket:
    with inside(netns_path):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.setblocking(False)
    return sock


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction of a relayed connection until it ends."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(netns_path: str, port: int) -> None:
    listener = _listen_in(netns_path, port)

    async def relay(client_reader: asyncio.StreamReader,
                    client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer),
                             pump(server_reader, client_writer))

    server = await asyncio.start_server(relay, sock=listener)
    async with server:
        await server.serve_forever()


async def main(netns_path: str, ports: list[int]) -> None:
    await asyncio.gather(*(_serve(netns_path, port) for port in ports))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(port) for port in sys.argv[2:]]))
