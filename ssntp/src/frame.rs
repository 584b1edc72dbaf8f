//! SSNTP frames (reference/ssntp.md §2.2–§6): the three structs, their constants, and their
//! gob encoding exactly as the Go peers write it.

use crate::gob::{
    encode_definition, put_bytes, put_message, put_uint, Decoder, Field, GobError, Message, Value,
    WireType, BYTES, UINT,
};

/// Frame types.
pub mod kind {
    pub const COMMAND: u8 = 0;
    pub const STATUS: u8 = 1;
    pub const ERROR: u8 = 2;
    pub const EVENT: u8 = 3;
}

/// COMMAND operands.
pub mod command {
    pub const CONNECT: u8 = 0;
    pub const START: u8 = 1;
    pub const STATS: u8 = 2;
    pub const EVACUATE: u8 = 3;
    pub const DELETE: u8 = 4;
    pub const ASSIGN_PUBLIC_IP: u8 = 5;
    pub const RELEASE_PUBLIC_IP: u8 = 6;
    pub const CONFIGURE: u8 = 7;
    pub const ATTACH_VOLUME: u8 = 8;
    pub const RESTORE: u8 = 9;
    pub const REFRESH_CNCI: u8 = 10;
    /// This project's: the controller's answer to a CnciRequest
    /// ([`crate::payloads::CnciAssignment`]), master controller → one compute node.
    pub const CNCI_ASSIGNMENT: u8 = 64;
    /// This project's: the controller's answer to a SubnetRequest
    /// ([`crate::payloads::SubnetAssignment`]), master controller → one compute node.
    pub const SUBNET_ASSIGNMENT: u8 = 65;
    /// This project's: a tenant's inbound forwards and SSH access, a full snapshot
    /// ([`crate::payloads::TenantIngress`]), master controller → the tenant's CNCI.
    pub const TENANT_INGRESS: u8 = 70;
    /// This project's: the security groups one compute node enforces for one tenant
    /// ([`crate::payloads::SecurityGroupsUpdate`]), master controller → one compute node.
    pub const SECURITY_GROUPS_UPDATE: u8 = 71;
}

/// STATUS operands.
pub mod status {
    pub const CONNECTED: u8 = 0;
    pub const READY: u8 = 1;
    pub const FULL: u8 = 2;
    pub const OFFLINE: u8 = 3;
    pub const MAINTENANCE: u8 = 4;
}

/// EVENT operands.
pub mod event {
    pub const TENANT_ADDED: u8 = 0;
    pub const TENANT_REMOVED: u8 = 1;
    pub const INSTANCE_DELETED: u8 = 2;
    pub const CONCENTRATOR_INSTANCE_ADDED: u8 = 3;
    pub const PUBLIC_IP_ASSIGNED: u8 = 4;
    pub const PUBLIC_IP_UNASSIGNED: u8 = 5;
    pub const TRACE_REPORT: u8 = 6;
    pub const NODE_CONNECTED: u8 = 7;
    pub const NODE_DISCONNECTED: u8 = 8;
    pub const INSTANCE_STOPPED: u8 = 9;
    /// This project's: a compute node's whole set of registrations at one CNCI
    /// ([`crate::payloads::TenantSync`]). Far from ciao's range so a future ciao event cannot
    /// collide with it.
    pub const TENANT_SYNC: u8 = 64;
    /// This project's: a compute node asks for a tenant subnet's CNCI
    /// ([`crate::payloads::CnciRequest`]), compute node → all controllers.
    pub const CNCI_REQUEST: u8 = 65;
    /// This project's: a node describes itself after connecting
    /// ([`crate::payloads::NodeReport`]), node → all controllers.
    pub const NODE_REPORT: u8 = 66;
    /// This project's: a compute node asks for a tenant's automatic subnet
    /// ([`crate::payloads::SubnetRequest`]), compute node → all controllers.
    pub const SUBNET_REQUEST: u8 = 67;
    /// This project's: a CNCI applied a TenantIngress snapshot
    /// ([`crate::payloads::TenantIngressApplied`]), CNCI → all controllers.
    pub const TENANT_INGRESS_APPLIED: u8 = 70;
    /// This project's: a compute node's ports of one tenant and their security groups
    /// ([`crate::payloads::PortGroups`]), compute node → all controllers.
    pub const PORT_GROUPS: u8 = 71;
    /// This project's: a compute node's answer to a SecurityGroupsUpdate
    /// ([`crate::payloads::SecurityGroupsApplied`]), compute node → all controllers.
    pub const SECURITY_GROUPS_APPLIED: u8 = 72;
}

/// ERROR operands.
pub mod error {
    pub const INVALID_FRAME_TYPE: u8 = 0;
    pub const START_FAILURE: u8 = 1;
    pub const CONNECTION_FAILURE: u8 = 2;
    pub const DELETE_FAILURE: u8 = 3;
    pub const CONNECTION_ABORTED: u8 = 4;
    pub const INVALID_CONFIGURATION: u8 = 5;
    pub const ATTACH_VOLUME_FAILURE: u8 = 6;
    pub const ASSIGN_PUBLIC_IP_FAILURE: u8 = 7;
    pub const UNASSIGN_PUBLIC_IP_FAILURE: u8 = 8;
    /// This project's: the controller refuses a CnciRequest for good
    /// ([`crate::payloads::CnciRefused`]), master controller → one compute node.
    pub const CNCI_REFUSED: u8 = 65;
    /// This project's: a CNCI refused a TenantIngress snapshot, nothing of it applied
    /// ([`crate::payloads::TenantIngressFailure`]), CNCI → all controllers.
    pub const TENANT_INGRESS_FAILURE: u8 = 70;
}

/// Role bits (reference/ssntp.md §1.1); a peer's role is their OR.
pub mod role {
    pub const SERVER: u32 = 0x01;
    pub const CONTROLLER: u32 = 0x02;
    pub const AGENT: u32 = 0x04;
    pub const SCHEDULER: u32 = 0x08;
    pub const NETAGENT: u32 = 0x10;
    pub const CNCIAGENT: u32 = 0x20;
}

/// Bit 7 of Major: the frame carries a path trace.
pub const TRACE_FLAG: u8 = 0x80;

/// A `time.Time` as Go's `MarshalBinary` writes it (version, seconds since year 1, nanoseconds,
/// zone offset in minutes, 0xFFFF for UTC). Kept as bytes: SSNTP never interprets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GobTime(pub Vec<u8>);

impl GobTime {
    /// Seconds from 0001-01-01 to 1970-01-01.
    const UNIX_TO_GO: u64 = 62_135_596_800;

    /// Go's zone field for `time.UTC` (a `time.Time` made with `time.UTC`, `t.UTC()`).
    const ZONE_UTC: [u8; 2] = [0xFF, 0xFF];

    /// Go's zone field for `time.Local` on a host whose zone is UTC: offset 0 minutes.
    const ZONE_LOCAL_UTC: [u8; 2] = [0x00, 0x00];

    fn encode(t: std::time::SystemTime, zone: [u8; 2]) -> Self {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut b = vec![1];
        b.extend_from_slice(&(d.as_secs() + Self::UNIX_TO_GO).to_be_bytes());
        b.extend_from_slice(&d.subsec_nanos().to_be_bytes());
        b.extend_from_slice(&zone);
        GobTime(b)
    }

    /// The UTC time `t` in Go's binary form (zone `time.UTC`).
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        Self::encode(t, Self::ZONE_UTC)
    }

    /// `t` as Go's `time.Now()` writes it on a host whose local zone is UTC: location Local,
    /// offset 0 minutes (`00 00`, not the UTC marker). This is what the Go scheduler put in its
    /// path nodes (reference/ssntp-vectors/13). The host's own zone is not consulted: the
    /// instant is exact; only the zone Go would display differs on a host outside UTC.
    pub fn local_utc(t: std::time::SystemTime) -> Self {
        Self::encode(t, Self::ZONE_LOCAL_UTC)
    }

    /// Now, as [`GobTime::local_utc`] writes it.
    pub fn now() -> Self {
        Self::local_utc(std::time::SystemTime::now())
    }

    /// The instant, if this is Go's version-1 or -2 form at or after 1970 (the zone, which
    /// does not change the instant, is ignored).
    pub fn to_system_time(&self) -> Option<std::time::SystemTime> {
        let b = &self.0;
        if !matches!(b.first(), Some(1 | 2)) || b.len() < 15 {
            return None;
        }
        let secs = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
        let nanos = u32::from_be_bytes(b.get(9..13)?.try_into().ok()?);
        let unix = secs.checked_sub(Self::UNIX_TO_GO)?;
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(unix, nanos))
    }
}

/// One hop of a traced frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceNode {
    pub uuid: Vec<u8>,
    pub role: u32,
    pub tx: Option<GobTime>,
    pub rx: Option<GobTime>,
}

/// The optional path trace of a frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameTrace {
    pub label: Vec<u8>,
    pub start: Option<GobTime>,
    pub end: Option<GobTime>,
    pub path_length: u8,
    pub path: Vec<TraceNode>,
}

/// CONNECT, the client's first message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectFrame {
    pub major: u8,
    pub minor: u8,
    pub kind: u8,
    pub operand: u8,
    pub role: u32,
    pub source: Vec<u8>,
    pub destination: Vec<u8>,
}

/// CONNECTED, the server's answer to CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectedFrame {
    pub major: u8,
    pub minor: u8,
    pub kind: u8,
    pub operand: u8,
    pub role: u32,
    pub source: Vec<u8>,
    pub destination: Vec<u8>,
    pub payload_length: u32,
    pub payload: Vec<u8>,
}

/// Every other frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub major: u8,
    pub minor: u8,
    pub kind: u8,
    pub operand: u8,
    /// The UUID of the peer that created the frame (kept when the scheduler forwards it).
    pub origin: [u8; 16],
    pub payload_length: u32,
    pub trace: Option<FrameTrace>,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame as Go peers build it: Minor 1, PayloadLength = len(Payload).
    pub fn new(kind: u8, operand: u8, origin: uuid::Uuid, payload: Vec<u8>) -> Self {
        Frame {
            major: 0,
            minor: 1,
            kind,
            operand,
            origin: *origin.as_bytes(),
            payload_length: payload.len() as u32,
            trace: None,
            payload,
        }
    }

    /// The protocol version, without the trace flag.
    pub fn version(&self) -> u8 {
        self.major & !TRACE_FLAG
    }

    /// Whether Go records the path of this frame (`Frame.PathTrace`): the flag and a trace.
    /// A trace without the flag only carries a label.
    pub fn path_traced(&self) -> bool {
        self.major & TRACE_FLAG != 0 && self.trace.is_some()
    }

    /// What every Go peer does on reading a traced frame (`session.Read`): append its own path
    /// node with the receive time. PathLength becomes the path's length, which for a consistent
    /// frame is Go's `PathLength++` (wrapping at 256 like Go's uint8); an inconsistent count
    /// from the sender is corrected instead of indexing outside the path as Go would.
    pub fn record_receive(&mut self, node: uuid::Uuid, role: u32, rx: GobTime) {
        if !self.path_traced() {
            return;
        }
        if let Some(trace) = &mut self.trace {
            trace.path.push(TraceNode {
                uuid: node.as_bytes().to_vec(),
                role,
                tx: None,
                rx: Some(rx),
            });
            trace.path_length = (trace.path.len() % 256) as u8;
        }
    }

    /// What Go does on writing a traced frame (`session.Write`): stamp the send time on the last
    /// path node. Only when that node is `node`'s own (appended by [`Frame::record_receive`]),
    /// so that another hop's times are never overwritten.
    pub fn record_send(&mut self, node: &uuid::Uuid, tx: GobTime) {
        if !self.path_traced() {
            return;
        }
        let last = self.trace.as_mut().and_then(|t| t.path.last_mut());
        if let Some(last) = last.filter(|n| n.uuid == node.as_bytes()) {
            last.tx = Some(tx);
        }
    }
}

/// What a peer can receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Connect(ConnectFrame),
    Connected(ConnectedFrame),
    Frame(Frame),
}

// Type ids the Go peers use (they are per process; these reproduce every capture).
const ID_CONNECT: i64 = 65;
const ID_FRAME: i64 = 66;
const ID_UUID: i64 = 67;
const ID_TRACE: i64 = 68;
const ID_TIME: i64 = 69;
const ID_NODE: i64 = 70;
const ID_NODES: i64 = 71;

fn fields(list: &[(&str, i64)]) -> Vec<Field> {
    list.iter()
        .map(|(name, id)| Field {
            name: (*name).to_string(),
            id: *id,
        })
        .collect()
}

fn connect_type(connected: bool) -> WireType {
    let mut list = vec![
        ("Major", UINT),
        ("Minor", UINT),
        ("Type", UINT),
        ("Operand", UINT),
        ("Role", UINT),
        ("Source", BYTES),
        ("Destination", BYTES),
    ];
    if connected {
        list.extend([("PayloadLength", UINT), ("Payload", BYTES)]);
    }
    WireType::Struct {
        name: if connected {
            "ConnectedFrame"
        } else {
            "ConnectFrame"
        }
        .into(),
        fields: fields(&list),
    }
}

fn frame_type(with_trace: bool) -> WireType {
    let mut list = vec![
        ("Major", UINT),
        ("Minor", UINT),
        ("Type", UINT),
        ("Operand", UINT),
        ("Origin", ID_UUID),
        ("PayloadLength", UINT),
    ];
    if with_trace {
        list.push(("Trace", ID_TRACE));
    }
    list.push(("Payload", BYTES));
    WireType::Struct {
        name: "Frame".into(),
        fields: fields(&list),
    }
}

/// The Frame type definitions in Go's order: Frame, UUID, FrameTrace, Time, []Node, Node.
fn go_frame_definitions() -> Vec<(i64, WireType)> {
    vec![
        (ID_FRAME, frame_type(true)),
        (
            ID_UUID,
            WireType::Array {
                name: "UUID".into(),
                elem: UINT,
                len: 16,
            },
        ),
        (
            ID_TRACE,
            WireType::Struct {
                name: "FrameTrace".into(),
                fields: fields(&[
                    ("Label", BYTES),
                    ("StartTimestamp", ID_TIME),
                    ("EndTimestamp", ID_TIME),
                    ("PathLength", UINT),
                    ("Path", ID_NODES),
                ]),
            },
        ),
        (
            ID_TIME,
            WireType::Encoded {
                name: "Time".into(),
            },
        ),
        (
            ID_NODES,
            WireType::Slice {
                name: "[]ssntp.Node".into(),
                elem: ID_NODE,
            },
        ),
        (
            ID_NODE,
            WireType::Struct {
                name: "Node".into(),
                fields: fields(&[
                    ("UUID", BYTES),
                    ("Role", UINT),
                    ("TxTimestamp", ID_TIME),
                    ("RxTimestamp", ID_TIME),
                ]),
            },
        ),
    ]
}

/// Writes a struct value: (field delta, value) pairs, zero values omitted, then 0.
struct StructWriter<'a> {
    out: &'a mut Vec<u8>,
    last: i64,
}

impl<'a> StructWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, last: -1 }
    }

    fn field(&mut self, index: i64) {
        put_uint(self.out, (index - self.last) as u64);
        self.last = index;
    }

    fn uint(&mut self, index: i64, v: u64) {
        if v != 0 {
            self.field(index);
            put_uint(self.out, v);
        }
    }

    fn bytes(&mut self, index: i64, b: &[u8]) {
        if !b.is_empty() {
            self.field(index);
            put_bytes(self.out, b);
        }
    }

    fn time(&mut self, index: i64, t: &Option<GobTime>) {
        if let Some(t) = t {
            self.field(index);
            put_bytes(self.out, &t.0);
        }
    }

    /// Arrays are never omitted, even all zero.
    fn uuid(&mut self, index: i64, uuid: &[u8; 16]) {
        self.field(index);
        put_uint(self.out, 16);
        for b in uuid {
            put_uint(self.out, u64::from(*b));
        }
    }

    /// Fields 0-6 shared by ConnectFrame and ConnectedFrame.
    #[allow(clippy::too_many_arguments)]
    fn hello(
        &mut self,
        major: u8,
        minor: u8,
        kind: u8,
        operand: u8,
        role: u32,
        source: &[u8],
        destination: &[u8],
    ) {
        self.uint(0, major.into());
        self.uint(1, minor.into());
        self.uint(2, kind.into());
        self.uint(3, operand.into());
        self.uint(4, role.into());
        self.bytes(5, source);
        self.bytes(6, destination);
    }

    fn end(self) {
        self.out.push(0);
    }
}

fn write_trace(out: &mut Vec<u8>, t: &FrameTrace) {
    let mut w = StructWriter::new(out);
    w.bytes(0, &t.label);
    w.time(1, &t.start);
    w.time(2, &t.end);
    w.uint(3, u64::from(t.path_length));
    if !t.path.is_empty() {
        w.field(4);
        put_uint(w.out, t.path.len() as u64);
        for node in &t.path {
            let mut n = StructWriter::new(w.out);
            n.bytes(0, &node.uuid);
            n.uint(1, u64::from(node.role));
            n.time(2, &node.tx);
            n.time(3, &node.rx);
            n.end();
        }
    }
    w.end();
}

/// Which Frame definition an encoder announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameDefinitions {
    /// Exactly what Go sends: Frame with Trace, and all trace component types.
    #[default]
    Go,
    /// Frame without Trace plus the UUID type only; accepted by Go (reference §2.2). Traces of
    /// frames sent this way are dropped.
    Minimal,
}

/// The sending side of one SSNTP gob stream.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    definitions: FrameDefinitions,
    sent_connect: bool,
    sent_frame: bool,
}

impl Encoder {
    pub fn new(definitions: FrameDefinitions) -> Self {
        Self {
            definitions,
            ..Self::default()
        }
    }

    fn define(out: &mut Vec<u8>, id: i64, ty: &WireType) {
        let mut body = Vec::new();
        encode_definition(&mut body, id, ty);
        put_message(out, &body);
    }

    fn value(out: &mut Vec<u8>, id: i64, write: impl FnOnce(&mut Vec<u8>)) {
        let mut body = Vec::new();
        crate::gob::put_int(&mut body, id);
        write(&mut body);
        put_message(out, &body);
    }

    /// Appends CONNECT (with its definition on first use).
    pub fn connect(&mut self, out: &mut Vec<u8>, f: &ConnectFrame) {
        if !self.sent_connect {
            Self::define(out, ID_CONNECT, &connect_type(false));
            self.sent_connect = true;
        }
        Self::value(out, ID_CONNECT, |b| {
            let mut w = StructWriter::new(b);
            w.hello(
                f.major,
                f.minor,
                f.kind,
                f.operand,
                f.role,
                &f.source,
                &f.destination,
            );
            w.end();
        });
    }

    /// Appends CONNECTED (with its definition on first use).
    pub fn connected(&mut self, out: &mut Vec<u8>, f: &ConnectedFrame) {
        if !self.sent_connect {
            Self::define(out, ID_CONNECT, &connect_type(true));
            self.sent_connect = true;
        }
        Self::value(out, ID_CONNECT, |b| {
            let mut w = StructWriter::new(b);
            w.hello(
                f.major,
                f.minor,
                f.kind,
                f.operand,
                f.role,
                &f.source,
                &f.destination,
            );
            w.uint(7, f.payload_length.into());
            w.bytes(8, &f.payload);
            w.end();
        });
    }

    /// Appends a Frame (with the Frame definitions on first use).
    pub fn frame(&mut self, out: &mut Vec<u8>, f: &Frame) {
        let minimal = self.definitions == FrameDefinitions::Minimal;
        if !self.sent_frame {
            if minimal {
                let defs = go_frame_definitions();
                Self::define(out, ID_FRAME, &frame_type(false));
                Self::define(out, ID_UUID, &defs[1].1);
            } else {
                for (id, ty) in go_frame_definitions() {
                    Self::define(out, id, &ty);
                }
            }
            self.sent_frame = true;
        }
        Self::value(out, ID_FRAME, |b| {
            let mut w = StructWriter::new(b);
            w.uint(0, f.major.into());
            w.uint(1, f.minor.into());
            w.uint(2, f.kind.into());
            w.uint(3, f.operand.into());
            w.uuid(4, &f.origin);
            w.uint(5, f.payload_length.into());
            let payload_index = if minimal { 6 } else { 7 };
            if let (Some(trace), false) = (&f.trace, minimal) {
                w.field(6);
                write_trace(w.out, trace);
            }
            w.bytes(payload_index, &f.payload);
            w.end();
        });
    }
}

/// Why a gob value is not the frame it should be.
fn shape(what: &str) -> GobError {
    GobError::Corrupt(format!("frame field {what} has the wrong type or range"))
}

fn get_uint(v: &Value, name: &str) -> Result<u64, GobError> {
    match v.field(name) {
        None => Ok(0),
        Some(Value::Uint(u)) => Ok(*u),
        Some(_) => Err(shape(name)),
    }
}

fn get_u8(v: &Value, name: &str) -> Result<u8, GobError> {
    u8::try_from(get_uint(v, name)?).map_err(|_| shape(name))
}

fn get_u32(v: &Value, name: &str) -> Result<u32, GobError> {
    u32::try_from(get_uint(v, name)?).map_err(|_| shape(name))
}

fn get_bytes(v: &Value, name: &str) -> Result<Vec<u8>, GobError> {
    match v.field(name) {
        None => Ok(Vec::new()),
        Some(Value::Bytes(b)) => Ok(b.clone()),
        Some(_) => Err(shape(name)),
    }
}

fn get_time(v: &Value, name: &str) -> Result<Option<GobTime>, GobError> {
    match v.field(name) {
        None => Ok(None),
        Some(Value::Encoded(b)) | Some(Value::Bytes(b)) => Ok(Some(GobTime(b.clone()))),
        Some(_) => Err(shape(name)),
    }
}

fn get_uuid(v: &Value, name: &str) -> Result<[u8; 16], GobError> {
    let mut out = [0u8; 16];
    match v.field(name) {
        None => Ok(out),
        Some(Value::Array(items)) if items.len() == 16 => {
            for (slot, item) in out.iter_mut().zip(items) {
                *slot = match item {
                    Value::Uint(u) => u8::try_from(*u).map_err(|_| shape(name))?,
                    _ => return Err(shape(name)),
                };
            }
            Ok(out)
        }
        Some(_) => Err(shape(name)),
    }
}

fn to_trace(v: &Value) -> Result<FrameTrace, GobError> {
    let path = match v.field("Path") {
        None => Vec::new(),
        Some(Value::Slice(nodes)) => nodes
            .iter()
            .map(|n| {
                Ok(TraceNode {
                    uuid: get_bytes(n, "UUID")?,
                    role: get_u32(n, "Role")?,
                    tx: get_time(n, "TxTimestamp")?,
                    rx: get_time(n, "RxTimestamp")?,
                })
            })
            .collect::<Result<_, GobError>>()?,
        Some(_) => return Err(shape("Path")),
    };
    Ok(FrameTrace {
        label: get_bytes(v, "Label")?,
        start: get_time(v, "StartTimestamp")?,
        end: get_time(v, "EndTimestamp")?,
        path_length: get_u8(v, "PathLength")?,
        path,
    })
}

/// Turns a decoded struct into the frame its definition describes (matched by field names,
/// as Go does: CONNECTED has a payload, Frame has an Origin).
pub fn to_incoming(ty: &WireType, v: &Value) -> Result<Incoming, GobError> {
    let WireType::Struct { fields, .. } = ty else {
        return Err(GobError::Corrupt(
            "an SSNTP message must be a struct".into(),
        ));
    };
    let has = |n: &str| fields.iter().any(|f| f.name == n);
    if has("Origin") {
        let trace = match v.field("Trace") {
            None => None,
            Some(t @ Value::Struct(_)) => Some(to_trace(t)?),
            Some(_) => return Err(shape("Trace")),
        };
        Ok(Incoming::Frame(Frame {
            major: get_u8(v, "Major")?,
            minor: get_u8(v, "Minor")?,
            kind: get_u8(v, "Type")?,
            operand: get_u8(v, "Operand")?,
            origin: get_uuid(v, "Origin")?,
            payload_length: get_u32(v, "PayloadLength")?,
            trace,
            payload: get_bytes(v, "Payload")?,
        }))
    } else if has("Role") && has("Payload") {
        Ok(Incoming::Connected(ConnectedFrame {
            major: get_u8(v, "Major")?,
            minor: get_u8(v, "Minor")?,
            kind: get_u8(v, "Type")?,
            operand: get_u8(v, "Operand")?,
            role: get_u32(v, "Role")?,
            source: get_bytes(v, "Source")?,
            destination: get_bytes(v, "Destination")?,
            payload_length: get_u32(v, "PayloadLength")?,
            payload: get_bytes(v, "Payload")?,
        }))
    } else if has("Role") {
        Ok(Incoming::Connect(ConnectFrame {
            major: get_u8(v, "Major")?,
            minor: get_u8(v, "Minor")?,
            kind: get_u8(v, "Type")?,
            operand: get_u8(v, "Operand")?,
            role: get_u32(v, "Role")?,
            source: get_bytes(v, "Source")?,
            destination: get_bytes(v, "Destination")?,
        }))
    } else {
        Err(GobError::Corrupt("a struct that is no SSNTP frame".into()))
    }
}

/// The receiving side of one SSNTP stream: gob decoding plus frame typing.
#[derive(Debug, Clone, Default)]
pub struct FrameDecoder {
    gob: Decoder,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one message body; `Ok(None)` for a type definition.
    pub fn decode(&mut self, body: &[u8]) -> Result<Option<Incoming>, GobError> {
        match self.gob.decode(body)? {
            Message::Definition(..) => Ok(None),
            Message::Value(id, value) => {
                let ty = self
                    .gob
                    .types()
                    .get(id)
                    .ok_or_else(|| GobError::Corrupt(format!("value of builtin type {id}")))?;
                to_incoming(ty, &value).map(Some)
            }
        }
    }

    /// Decodes a complete stream into its frames.
    pub fn decode_stream(&mut self, mut stream: &[u8]) -> Result<Vec<Incoming>, GobError> {
        let mut out = Vec::new();
        while !stream.is_empty() {
            let (prefix, size) =
                crate::gob::split_message(stream, crate::gob::DEFAULT_MAX_MESSAGE)?
                    .ok_or(GobError::Truncated)?;
            let end = prefix + size;
            if stream.len() < end {
                return Err(GobError::Truncated);
            }
            if let Some(frame) = self.decode(&stream[prefix..end])? {
                out.push(frame);
            }
            stream = &stream[end..];
        }
        Ok(out)
    }
}
