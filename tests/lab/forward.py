"""``python -m tests.lab.forward NETNS_PATH PORT:ADDRESS:TARGET_PORT ...``:
make ADDRESS:TARGET_PORT, as seen from inside a network namespace (the lab's
operator namespace), reachable at 127.0.0.1:PORT of the root namespace.

The opposite of tests.support.netnsrelay: the test process (root namespace)
reaches the lab's portals through it, and nothing of the lab is given an
address outside its own namespaces. A socket belongs to the namespace its
thread was in when it was made, so this one process holds both ends.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from tests.support.netnsrelay import inside, pump


def _socket_in(netns_path: str) -> socket.socket:
    with inside(netns_path):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def _serve(netns_path: str, port: int, address: str, target_port: int) -> None:
    loop = asyncio.get_running_loop()

    async def relay(client_reader: asyncio.StreamReader,
                    client_writer: asyncio.StreamWriter) -> None:
        sock = _socket_in(netns_path)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address, target_port)), 10)
            server_reader, server_writer = await asyncio.open_connection(sock=sock)
        except (OSError, TimeoutError):
            sock.close()
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer),
                             pump(server_reader, client_writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def main(netns_path: str, specs: list[str]) -> None:
    routes = []
    for spec in specs:
        port, address, target = spec.split(":")
        routes.append(_serve(netns_path, int(port), address, int(target)))
    await asyncio.gather(*routes)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
