"""The images this node holds, and the guest disks made on them.

    sync      the cache kept in step with etcd's image records: what to fetch
              (pre-cached images; snapshots from the node that took them), what
              to forget, and each image's progress and state on this node
    cache     one qcow2 per image, fetched once, shared by every caller
    fetch     the bytes: HTTP(S) pinned to the addresses the URL guard approved,
              redirects checked hop by hop, bounded in size and time; or a file
    formats   what a download is, read from its header before qemu-img sees it;
              whatever names another file of the host is refused there
    sandbox   where qemu-img works on a download: unprivileged, in its own directory
    qemuimg   every qemu-img run: always told the format, under limits, converting,
              flattening; its own messages go to the log, never to a user
    overlay   a guest's disk, as a qcow2 overlay on a cached image
    routes    the agent server's route serving this node's snapshots to others
    files     durable writes: hashing, fsync
    errors    ImageError, whose message a user reads
"""
