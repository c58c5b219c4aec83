"""Usage: what the node and its guests use, for graphs, Shaken Fist's
resources events and Prometheus.

    sampler     every SFCLOUD_USAGE_INTERVAL seconds: host counters (host) and
                libvirt's bulk statistics of every guest (guests), as figures
                (figures), into the history and to live listeners (live)
    history     the files of fixed size the history lives in, on the node
    placed      which instances are this node's (from the agent's mirror)
    routes      the agent server's routes: history, figures now, live, /metrics
    prometheus  /metrics' families
    resources   Shaken Fist's resources events, every five minutes

Why on the node: the samples are taken there, the history's size is fixed
per object (cloudstate.usage says how much), and the portal only reads it
when somebody looks, so graphs survive portal restarts and cost the portal
nothing otherwise; etcd never sees any of it.
"""
