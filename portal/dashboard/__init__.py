"""The dashboard: the cloud at a glance, as the portal's home page, kept live."""
