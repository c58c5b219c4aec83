"""Usage in the portal's pages: graphs (history as JSON, live samples over a
websocket), sparklines and figures in lists, all read from the node agents
when someone looks (portal.cloud.usage)."""
