"""Installation and build helpers for sfcloud (images, units, playbooks)."""
