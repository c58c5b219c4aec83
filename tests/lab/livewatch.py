"""``python -m tests.lab.livewatch BASE_URL USER PASSWORD_FILE WS_PATH MARKER TIMEOUT``:
a browser's live page, as the lab's operator sees it.

Logs in to the portal at BASE_URL, opens the page's websocket (WS_PATH,
with the session's cookie and the portal's own origin), prints ``OPEN``
once it is connected, then reads what the portal pushes until a message
contains MARKER (prints ``SEEN`` and exits 0) or TIMEOUT seconds pass
(exit 1). Run inside the lab's operator namespace (``ip netns exec``), so
the portal is reached at its own address, as a person's browser would.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.support.consoles import open_socket, web_login


def main(argv: list[str]) -> int:
    base_url, user, password_file, path, marker, timeout = argv
    session = web_login(base_url, user, Path(password_file).read_text().strip())
    ws = open_socket(session, base_url, path)
    print("OPEN", flush=True)
    deadline = time.monotonic() + float(timeout)
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = ws.recv(timeout=left)
        except TimeoutError:
            break
        text = message if isinstance(message, str) else message.decode(errors="replace")
        if marker in text:
            print("SEEN", flush=True)
            return 0
    print("NOT SEEN", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
