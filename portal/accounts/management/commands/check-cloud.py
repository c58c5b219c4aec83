"""``manage.py check-cloud``: is etcd consistent with itself?

Walks every record of the cloud (names, interfaces, addresses, MACs, VXLAN
ids, fences, capacity, transitional states that lasted too long) and prints
one line per drift; exits 1 if there is any. What each node's libvirt and
kernel hold is checked on that node: ``python -m nodeagent.check``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from django.core.management.base import BaseCommand

from cloudstate.audit import DEFAULT_SETTLE, check_names
from portal.cloud import audit, store


class Command(BaseCommand):
    help = "Report drift between the cloud's records in etcd (exit 1 if any)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE,
                            help="seconds work may be in flight before it counts as stuck "
                                 f"(default {DEFAULT_SETTLE:.0f})")
        parser.add_argument("--json", action="store_true", help="print the drift as JSON")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        async def run() -> list:
            try:
                return await audit.check(options["settle"])
            finally:
                await store.etcd().close()

        drift = asyncio.run(run())
        if options["json"]:
            self.stdout.write(json.dumps([d.__dict__ for d in drift], indent=2))
        else:
            for item in drift:
                self.stdout.write(str(item))
            self.stdout.write(f"{len(drift)} drift in etcd ({len(check_names())} checks: "
                              f"{', '.join(check_names())}); each node's own half: "
                              "python -m nodeagent.check")
        if drift:
            sys.exit(1)
