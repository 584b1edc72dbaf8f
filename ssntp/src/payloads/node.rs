//! Node status and presence (reference/ssntp.md §7.7, §7.8).

yaml_struct! {
    /// Go `payloads.NetworkStat`: one interface of a node.
    pub struct NetworkStat {
        pub ip: String,
        pub mac: String,
    }
}

yaml_struct! {
    /// Go `payloads.Ready`: a node's resources. The scheduler only places workloads on nodes
    /// whose last STATUS was READY. Counters are Go `int`s; `-1` means unknown.
    pub struct Ready {
        pub node_uuid: String,
        pub mem_total_mb: i64,
        pub mem_available_mb: i64,
        pub disk_total_mb: i64,
        pub disk_available_mb: i64,
        pub load: i64,
        pub cpus_online: i64,
        /// An untagged Go field, hence the lower-cased field name.
        pub networks: Vec<NetworkStat>,
        pub hostname: String,
    }
}

// STATUS READY (1), node → scheduler. Flat: no top-level key.
flat_payload!(Ready = "READY");

string_enum! {
    /// Go `payloads.Resource` as used for node events.
    pub enum NodeType {
        ComputeNode = "compute_node",
        NetworkNode = "network_node",
    }
}

yaml_struct! {
    /// Go `payloads.NodeConnectedEvent`.
    pub struct NodeConnectedEvent {
        pub node_uuid: String,
        pub node_type: NodeType,
    }
}

wrapped_payload! {
    /// EVENT NodeConnected (7), scheduler → Controllers; one per role bit of the node.
    NodeConnected(NodeConnectedEvent) = "node_connected"
}

wrapped_payload! {
    /// EVENT NodeDisconnected (8), scheduler → Controllers.
    NodeDisconnected(NodeConnectedEvent) = "node_disconnected"
}
