"""What this node holds of the cloud's storage: blobs, the disk images made
from them, and uploads on their way to becoming blobs.

    sync      the node's blobs kept in step with etcd's blob and artifact records:
              what to make here (fetches assigned to this node), what to copy
              (pre-cached artifacts; what a local instance starts from), what to
              forget, and each blob's progress and state on this node
    blobs     one file per blob, exactly as it came, with its sha512: fetched,
              copied from another node, or adopted (a snapshot, a sealed upload)
    cache     one standalone qcow2 per blob a guest starts from, made once (the
              check that the bytes are a usable disk)
    uploads   uploads in progress: appended a chunk at a time, sealed into a blob
    fetch     the bytes: HTTP(S) pinned to the addresses the URL guard approved,
              redirects checked hop by hop, bounded in size and time; or a file
    inflight  work done once however many ask for it
    formats   what bytes are, read from their header before qemu-img sees them;
              whatever names another file of the host is refused there
    sandbox   where qemu-img works on untrusted bytes: unprivileged, in a directory
              of its own
    qemuimg   every qemu-img run: always told the format, under limits, converting,
              flattening; its own messages go to the log, never to a user
    overlay   a guest's disk, as a qcow2 overlay on a cached image
    routes    the agent server's storage routes: blobs' bytes, uploads
    files     durable writes: hashing, fsync
    errors    ImageError, whose message a user reads
"""
