"""Websockets that keep the security group pages current: the list (groups
and address sets, with how many interfaces use each group), a group's page
(its rules, the interfaces using it with what their hypervisors have in
force, its event log), and an address set's event log."""

from __future__ import annotations

from django.template.loader import render_to_string

from portal.cloud import addresssets, secgroups
from portal.cloud.errors import NotFound
from portal.live.hub import hub
from portal.live.pages import CollectionPage
from portal.secgroups.views import detail_context, list_context


class SecurityGroupsConsumer(CollectionPage):
    member_kind = "security-group"

    async def group(self) -> str:
        return (await hub()).secgroups_group

    async def find(self, uuid: str) -> secgroups.GroupRecord:
        return await secgroups.get(uuid, self.access.visible)

    async def refresh(self) -> None:
        if self.uuid is None:
            context = {**await list_context(self.access), "oob": True}
            await self.send(text_data=render_to_string("secgroups/_rows.html", context))
            await self.send(text_data=render_to_string("secgroups/_address_set_rows.html",
                                                       context))
            return
        try:
            record = await self.find(self.uuid)
        except NotFound:
            return
        context = {**await detail_context(record), "oob": True,
                   "can_operate": self.access.can_operate(record.spec.namespace)}
        # One message each: htmx reads a message starting with a <div> as
        # such, and a <tbody> after it would lose its table.
        for template in ("secgroups/_overview.html", "secgroups/_rules.html",
                         "secgroups/_interfaces.html"):
            await self.send(text_data=render_to_string(template, context))

    async def secgroup_changed(self, event: dict) -> None:
        await self.member_changed(event["uuid"])


class AddressSetConsumer(CollectionPage):
    """An address set's page: its event log, live."""

    member_kind = "address-set"

    async def group(self) -> str:
        return (await hub()).secgroups_group

    async def find(self, uuid: str) -> addresssets.AddressSetRecord:
        return await addresssets.get(uuid, self.access.visible)

    async def refresh(self) -> None:
        """Nothing but its events changes live."""

    async def secgroup_changed(self, event: dict) -> None:
        """(The page reloads its CIDRs when it is opened again.)"""
