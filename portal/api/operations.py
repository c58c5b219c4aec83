"""What each route of the API does, in a line, and which shapes it reads
and answers with: the words of the API's description. The paths, methods,
parameters and authentication come from the route table itself, and the
schemas from the shapes (portal.api.shapes, portal.api.requests);
portal.api.openapi puts the three together.

Keyed by the route as portal.api.urls declares it, then by method. A
route or method missing here fails tests/fast/test_openapi.py, as a route
missing from the authorization matrix does: nothing ships undescribed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloudstate import power as power_rules
from portal.api import requests as bodies
from portal.api import shapes

# What an answer is when it is not JSON.
HTML = "text/html"
TEXT = "text/plain"
OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class Op:
    summary: str
    returns: Any = None  # a shape (TypedDict), list[...], dict[...], str, None (null) or Any
    body: Any = None  # the JSON body it reads (a TypedDict), or None
    content: str = "application/json"  # what a success answers with
    raw_body: str | None = None  # the media type of a body that is not JSON
    # Query parameters it honours (name -> JSON type).
    query: tuple[tuple[str, str], ...] = ()
    # It may answer 507: no room (a node, a pool, a network).
    full: bool = False
    errors: str = "application/json"  # what a refusal or a 503 answers with


def _metadata(thing: str) -> dict[str, dict[str, Op]]:
    """Shaken Fist's metadata routes of one kind of object (portal.api.metadata)."""
    return {
        f"/{thing}s/<str:ref>/metadata": {
            "GET": Op(f"The {thing}'s metadata", dict[str, Any]),
            "POST": Op(f"Set one key of the {thing}'s metadata", None, bodies.MetadataBody),
        },
        f"/{thing}s/<str:ref>/metadata/<str:key>": {
            "PUT": Op(f"Set one key of the {thing}'s metadata", None, bodies.ValueBody),
            "POST": Op(f"Set one key of the {thing}'s metadata", None, bodies.ValueBody),
            "DELETE": Op(f"Delete one key of the {thing}'s metadata"),
        },
    }


def _events(path: str, thing: str) -> dict[str, dict[str, Op]]:
    return {path: {"GET": Op(f"The {thing}'s events, newest first", list[shapes.EventShape],
                             bodies.EventsBody)}}


OPERATIONS: dict[str, dict[str, Op]] = {
    # --- the server ----------------------------------------------------------------------------
    "": {"GET": Op("What this server is, and its capabilities (a page)", content=HTML)},
    "/": {"GET": Op("What this server is, and its capabilities (a page)", content=HTML)},
    "/openapi.json": {"GET": Op("This description of the API (OpenAPI 3.1)", dict[str, Any])},
    "/docs": {"GET": Op("This description of the API, as a page", content=HTML)},
    # portal.health: for load balancers, in plain text.
    "/livez": {"GET": Op("The portal process answers: ok", content=TEXT, errors=TEXT)},
    "/readyz": {"GET": Op("This portal can serve (etcd and the database answer): ready; "
                          "else 503, not ready", content=TEXT, errors=TEXT)},
    "/healthz": {"GET": Op("The same as /readyz", content=TEXT, errors=TEXT)},
    "/auth": {"POST": Op("Trade a namespace's key (or a personal token) for a bearer token",
                         shapes.TokenShape, bodies.AuthBody)},
    # --- namespaces ------------------------------------------------------------------------------
    "/auth/namespaces": {
        "GET": Op("The namespaces the caller may see", list[shapes.NamespaceShape]),
        "POST": Op("Create a namespace (system only), with a first key if given",
                   shapes.NamespaceShape, bodies.NamespaceBody),
    },
    "/auth/namespaces/<str:namespace>": {
        "GET": Op("One namespace", shapes.NamespaceShape),
        "DELETE": Op("Delete an empty namespace"),
    },
    "/auth/namespaces/<str:namespace>/keys": {
        "GET": Op("The names of the namespace's keys", list[str]),
        "POST": Op("Add a key to the namespace; answers its name", str, bodies.KeyBody),
        "PUT": Op("Change a key's secret; answers its name", str, bodies.KeyBody),
    },
    "/auth/namespaces/<str:namespace>/keys/<str:key_name>": {
        "PUT": Op("Change this key's secret; answers its name", str, bodies.KeyBody),
        "DELETE": Op("Delete this key (its tokens end)"),
    },
    "/auth/namespaces/<str:namespace>/metadata": {
        "GET": Op("The namespace's metadata", dict[str, Any]),
        "POST": Op("Set one key of the namespace's metadata; answers all of it",
                   dict[str, Any], bodies.MetadataBody)},
    "/auth/namespaces/<str:namespace>/quota": {
        "GET": Op("The namespace's quotas: each kind's limit and what is in use",
                  shapes.QuotaShape),
        "PUT": Op("Set limits (system admins): kind -> a whole number, or null for none; "
                  "kinds not named keep theirs", shapes.QuotaShape, dict[str, int | None])},
    "/auth/namespaces/<str:namespace>/trust": {
        "POST": Op("Let another namespace see this one's shared objects",
                   shapes.NamespaceShape, bodies.TrustBody)},
    "/auth/namespaces/<str:namespace>/trust/<str:other>": {
        "DELETE": Op("Stop trusting the other namespace", shapes.NamespaceShape)},
    "/auth/namespaces/<str:namespace>/metadata/<str:key>": {
        "PUT": Op("Set one key of the namespace's metadata; answers all of it",
                  dict[str, Any], bodies.ValueBody),
        "DELETE": Op("Delete one key of the namespace's metadata; answers the rest",
                     dict[str, Any]),
    },
    # --- instances -------------------------------------------------------------------------------
    "/instances": {
        "GET": Op("The instances of a namespace (all the caller sees by default)",
                  list[shapes.InstanceShape], bodies.ListBody),
        "POST": Op("Create an instance: placed on a node with room, built by its agent",
                   shapes.InstanceShape, bodies.InstanceBody, full=True),
        "DELETE": Op("Delete every instance of one namespace; answers their UUIDs", list[str],
                     bodies.DeleteAllBody),
    },
    "/instances/<str:ref>": {
        "GET": Op("One instance, by UUID (deleted ones too) or name", shapes.InstanceShape),
        "DELETE": Op("Delete the instance (its state goes deleting, then deleted)",
                     shapes.InstanceShape),
    },
    **_metadata("instance"),
    "/instances/<str:ref>/interfaces": {
        "GET": Op("The instance's network interfaces", list[shapes.InterfaceShape]),
        "POST": Op("Hot-plug one more interface, on a network given as a netdesc",
                   shapes.InterfaceShape, bodies.HotplugBody, full=True)},
    "/instances/<str:ref>/interfaces/<str:uuid>": {
        "DELETE": Op("Unplug one interface (sfcloud's own)", shapes.InterfaceShape)},
    **{f"/instances/<str:ref>/{verb}": {"POST": Op(
        f"Power action {verb} (409 when it makes no sense now, 406 while not ready)")}
       for verb in power_rules.API_ACTIONS},
    "/instances/<str:ref>/snapshot": {
        "GET": Op("The instance's snapshots, every version", list[shapes.SnapshotShape]),
        "POST": Op("Snapshot the first disk (or all, or one device); by device",
                   dict[str, shapes.SnapshotTakenShape], bodies.SnapshotBody, full=True),
    },
    "/instances/<str:ref>/consoledata": {
        "GET": Op("The last bytes of the serial console's log", body=bodies.ConsoleBody,
                  content=OCTETS),
        "DELETE": Op("Clear the serial console's log"),
    },
    **_events("/instances/<str:ref>/events", "instance"),
    # --- nodes -----------------------------------------------------------------------------------
    "/nodes": {"GET": Op("The hypervisors (system only)", list[shapes.NodeShape])},
    "/nodes/<str:ref>": {
        "GET": Op("One hypervisor (system only)", shapes.NodeShape),
        "DELETE": Op("Forget a node that is gone for good (system only)", shapes.NodeShape)},
    "/nodes/<str:ref>/maintenance": {
        "POST": Op("Put the node in maintenance (no new instances placed there) or take it out "
                   "({\"maintenance\": bool}; system admins)", shapes.NodeShape, dict[str, Any])},
    **_metadata("node"),
    "/join-tokens": {
        "GET": Op("The join tokens new machines join with, without their secrets "
                  "(system admins)", list[shapes.JoinTokenShape]),
        "POST": Op("Make a join token ({\"etcd\": bool}: the node also joins etcd; "
                   "\"ttl\": seconds); the "
                   "answer is the only place its secret and the join command appear "
                   "(system admins)", shapes.MadeJoinTokenShape, bodies.JoinTokenBody)},
    "/join-tokens/<str:token_id>": {
        "DELETE": Op("Revoke an unused join token (system admins)", shapes.JoinTokenShape)},
    **_events("/nodes/<str:ref>/events", "node"),
    # --- artifacts, blobs, uploads, labels -------------------------------------------------------
    "/artifacts": {
        "GET": Op("The artifacts the caller may see", list[shapes.ArtifactShape],
                  bodies.ArtifactListBody),
        "POST": Op("Cache an image by URL on every node (a new version if it changed)",
                   shapes.ArtifactShape, bodies.ArtifactBody, full=True),
        "DELETE": Op("Delete every artifact of one namespace; answers their UUIDs", list[str],
                     bodies.DeleteAllBody),
    },
    "/artifacts/upload/<str:name>": {
        "POST": Op("Make an upload (or a blob) a new version of the artifact of this name",
                   shapes.ArtifactShape, bodies.FromUploadBody)},
    "/artifacts/<str:ref>": {
        "GET": Op("One artifact", shapes.ArtifactShape),
        "DELETE": Op("Delete the artifact", shapes.ArtifactShape | None),
    },
    "/artifacts/<str:ref>/versions": {
        "GET": Op("The artifact's versions, each a blob", list[shapes.IndexedBlobShape]),
        "POST": Op("Set how many versions the artifact keeps", None, bodies.MaxVersionsBody),
    },
    "/artifacts/<str:ref>/versions/<str:index>": {
        "DELETE": Op("Delete one version of the artifact", shapes.ArtifactShape)},
    "/artifacts/<str:ref>/share": {
        "POST": Op("Share a system artifact with every namespace", shapes.ArtifactShape)},
    "/artifacts/<str:ref>/unshare": {
        "POST": Op("Stop sharing a system artifact", shapes.ArtifactShape)},
    **_metadata("artifact"),
    **_events("/artifacts/<str:ref>/events", "artifact"),
    "/blobs": {"GET": Op("The blobs the caller may see", list[shapes.BlobShape])},
    "/blobs/<str:ref>": {"GET": Op("One blob", shapes.BlobShape)},
    "/blobs/<str:ref>/data": {
        "GET": Op("The blob's bytes (HTTP ranges, or offset and limit)", content=OCTETS,
                  query=(("offset", "integer"), ("limit", "integer")))},
    "/blob_checksums/<str:algorithm>/<str:digest>": {
        "GET": Op("The blob with this checksum, if the caller may see one",
                  shapes.BlobShape | None)},
    **_metadata("blob"),
    **_events("/blobs/<str:ref>/events", "blob"),
    "/upload": {"POST": Op("Start an upload, on a node with room", shapes.UploadShape,
                           bodies.InNamespace, full=True)},
    "/upload/<str:ref>": {
        "GET": Op("The upload, with its size so far", shapes.UploadShape),
        "POST": Op("Append a chunk; answers the upload's size", int, raw_body=OCTETS,
                   full=True),
    },
    "/upload/<str:ref>/truncate/<str:offset>": {
        "POST": Op("Cut the upload back to this many bytes")},
    "/label/<path:name>": {
        "GET": Op("A label (name, or namespace/name)", shapes.ArtifactShape),
        "POST": Op("Point the label at a blob (a new version)", shapes.ArtifactShape,
                   bodies.LabelBody),
        "DELETE": Op("Delete the label", shapes.ArtifactShape | None),
    },
    # --- keypairs --------------------------------------------------------------------------------
    "/keypairs": {
        "GET": Op("The keypairs the caller may see", list[shapes.KeypairShape]),
        "POST": Op("Keep an ssh public key in a namespace", shapes.KeypairShape,
                   bodies.KeypairBody),
    },
    "/keypairs/<str:ref>": {
        "GET": Op("One keypair", shapes.KeypairShape),
        "DELETE": Op("Delete the keypair", shapes.KeypairShape),
    },
    # --- networks --------------------------------------------------------------------------------
    "/networks": {
        "GET": Op("The networks of a namespace (all the caller sees by default)",
                  list[shapes.NetworkShape], bodies.ListBody),
        "POST": Op("Create a network", shapes.NetworkShape, bodies.NetworkBody, full=True),
        "DELETE": Op("Delete every unused network of one namespace; answers their UUIDs",
                     list[str], bodies.DeleteAllBody),
    },
    "/networks/<str:ref>": {
        "GET": Op("One network (or the cloud's floating network)", shapes.NetworkShape),
        "DELETE": Op("Delete the network once nothing live uses it", shapes.NetworkShape),
    },
    "/networks/<str:ref>/interfaces": {
        "GET": Op("The network's interfaces", list[shapes.InterfaceShape])},
    "/networks/<str:ref>/addresses": {
        "GET": Op("The network's addresses that are not free", list[shapes.AddressShape])},
    **_metadata("network"),
    "/networks/<str:ref>/route": {
        "POST": Op("Route an address of the floating network to this network; answers it",
                   str, full=True)},
    "/networks/<str:ref>/route/<str:address>": {
        "DELETE": Op("Stop routing that address here")},
    "/networks/<str:ref>/dns": {
        "POST": Op("Add a name the network's DNS answers", None, bodies.DnsEntryBody),
        "DELETE": Op("Remove a name the network's DNS answers", None, bodies.DnsEntryBody)},
    "/networks/<str:ref>/ping/<str:address>": {
        "GET": Op("Ping an address of the network from its router", shapes.PingShape)},
    **_events("/networks/<str:ref>/events", "network"),
    "/interfaces/<str:uuid>": {"GET": Op("One interface", shapes.InterfaceShape)},
    "/interfaces/<str:uuid>/float": {
        "POST": Op("Give the interface a floating address", full=True)},
    "/interfaces/<str:uuid>/defloat": {"POST": Op("Take the interface's floating address")},
    # --- security groups (sfcloud's own; README: Security groups) -------------------------------
    "/interfaces/<str:uuid>/security-groups": {
        "GET": Op("The interface, with its security groups and their state",
                  shapes.InterfaceShape),
        "PUT": Op("Set the interface's groups, live ({\"security_groups\": [...]}; none: "
                  "default)", shapes.InterfaceShape, dict[str, Any])},
    "/interfaces/<str:uuid>/port-security": {
        "PUT": Op("Turn filtering of the interface off or on ({\"port_security\": bool})",
                  shapes.InterfaceShape, dict[str, Any])},
    "/interfaces/<str:uuid>/allowed-addresses": {
        "PUT": Op("Addresses the guest may also send from ({\"allowed_addresses\": [CIDR]})",
                  shapes.InterfaceShape, dict[str, Any])},
    "/security-groups": {
        "GET": Op("The security groups of a namespace (all the caller sees by default)",
                  list[dict[str, Any]], bodies.ListBody),
        "POST": Op("Create a group with its rules (all or none)", dict[str, Any],
                   dict[str, Any])},
    "/security-groups/<str:ref>": {
        "GET": Op("One security group and its rules", dict[str, Any]),
        "DELETE": Op("Delete a group nothing uses (never a namespace's default); "
                     "answers it as it was, state \"deleted\"", dict[str, Any])},
    "/security-groups/<str:ref>/rules": {
        "GET": Op("The group's rules", list[dict[str, Any]]),
        "POST": Op("Add one rule, or {\"rules\": [...]} (all or none)", Any, dict[str, Any])},
    "/security-groups/<str:ref>/rules/<str:rule_uuid>": {
        "GET": Op("One rule", dict[str, Any]),
        "DELETE": Op("Remove one rule: the connections it alone allowed end")},
    "/security-groups/<str:ref>/interfaces": {
        "GET": Op("The interfaces that use the group, with what their hypervisors have in force",
                  list[shapes.InterfaceShape])},
    **_metadata("security-group"),
    **_events("/security-groups/<str:ref>/events", "security group"),
    "/address-sets": {
        "GET": Op("The address sets of a namespace", list[dict[str, Any]], bodies.ListBody),
        "POST": Op("Create a named list of CIDRs", dict[str, Any], dict[str, Any])},
    "/address-sets/<str:ref>": {
        "GET": Op("One address set", dict[str, Any]),
        "PUT": Op("Change its CIDRs ({\"cidrs\": [...]}): every rule naming it follows",
                  dict[str, Any], dict[str, Any]),
        "DELETE": Op("Delete an address set no rule names; answers it as it was, "
                     "state \"deleted\"", dict[str, Any])},
    **_events("/address-sets/<str:ref>/events", "address set"),
}
