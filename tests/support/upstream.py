"""``python -m tests.support.upstream PORT LOG``: the far host of a test's
outside world. Answers every GET with the address it saw the request come
from, and appends that address to LOG (which it creates first, so a caller
knows it is listening)."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


def main() -> None:
    port, log = int(sys.argv[1]), Path(sys.argv[2])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            client = self.client_address[0]
            with log.open("a") as out:
                out.write(f"{client} {self.path}\n")
            body = f"SFCLOUD-UPSTREAM-SAW {client}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("0.0.0.0", port), Handler)
    log.write_text("listening\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
