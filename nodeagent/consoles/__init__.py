"""Consoles: what lets a browser see and drive a guest on this node.

The portal relays a browser's websocket to this node's agent server with a
signed grant; these modules answer it:

- ``routes``: the agent server's console routes, each answering only for
  an instance this node holds;
- ``serial``: one libvirt console stream per domain, fanned out to every
  viewer with scrollback and a bounded buffer each;
- ``vnc`` and ``rfb``: a websocket spliced to the domain's VNC socket, the
  agent doing VNC's authentication itself with a one-time password;
- ``logfile``: the serial console log virtlogd writes, read across its
  rotations and cleared.
"""
