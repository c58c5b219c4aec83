"""The images this node holds, and the guest disks made on them.

    sync      the cache kept in step with etcd's image records: what to fetch
              (pre-cached images; snapshots from the node that took them), what
              to forget, and each image's progress and state on this node
    cache     one qcow2 per image, fetched once, shared by every caller
    fetch     the bytes: HTTP(S) pinned to the addresses the URL guard approved,
              redirects checked hop by hop, bounded in size and time; or a file
    qemuimg   every qemu-img run: inspecting untrusted bytes under limits,
              refusing what would open other host files, converting, flattening
    overlay   a guest's disk, as a qcow2 overlay on a cached image
    routes    the agent server's route serving this node's snapshots to others
    files     durable writes: hashing, fsync
    errors    ImageError, whose message a user reads
"""
