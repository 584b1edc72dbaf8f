//! Payloads against the frames captured from real Go peers (reference/ssntp-vectors), plus
//! lenient parsing, the CNCI's checks and round trips.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/ssntp-vectors")
}

/// gob's unsigned integer encoding, to recognise a payload's length prefix.
fn gob_uint(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes = (n as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut out = vec![((bytes.len() - skip) as u8).wrapping_neg()];
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// Every payload in `stream` that starts with `marker`: a run of bytes that a gob length prefix
/// announces exactly and that the struct's terminating 0 byte follows.
fn payloads_in(stream: &[u8], marker: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for start in 0..stream.len() {
        if !stream[start..].starts_with(marker) {
            continue;
        }
        let Some(len) = stream[start..].iter().position(|b| *b == 0) else {
            continue;
        };
        if stream[..start].ends_with(&gob_uint(len)) {
            found.push(stream[start..start + len].to_vec());
        }
    }
    found
}

/// All payloads starting with `marker` in all captured files, with the file they came from.
fn captured(marker: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(vectors_dir())
        .expect("reference/ssntp-vectors is readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).expect("vector file");
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for p in payloads_in(&bytes, marker.as_bytes()) {
            out.push((name.clone(), p));
        }
    }
    out
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("payloads are UTF-8")
}

/// Parses every captured payload of type `P` and writes it back byte for byte; returns how
/// many there were and the first one parsed.
fn round_trip_all<P: Payload + std::fmt::Debug>(marker: &str) -> (usize, P) {
    let all = captured(marker);
    let mut first = None;
    for (file, bytes) in &all {
        let parsed = P::from_yaml(bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(text(&parsed.to_yaml()), text(bytes), "{file}: {}", P::NAME);
        first.get_or_insert(parsed);
    }
    (
        all.len(),
        first.unwrap_or_else(|| panic!("no {marker:?} payload in the vectors")),
    )
}

/// The worked example of reference/ssntp.md §10, as the Go launcher sent it.
const TENANT_ADDED: &str = "tenant_added:
  agent_uuid: a9e17000-0000-4000-8000-000000000002
  agent_ip: 10.99.0.2
  tenant_uuid: 2491851d-dce9-48d6-b83a-a717417072ce
  tenant_subnet: 172.16.1.0/24
  concentrator_uuid: 3390740c-dce9-48d6-b83a-a717417072ce
  concentrator_ip: 10.99.0.3
  subnet_key: 69804
";

const CNCI: &str = "3390740c-dce9-48d6-b83a-a717417072ce";
const TENANT: &str = "2491851d-dce9-48d6-b83a-a717417072ce";
const INSTANCE: &str = "2478251d-dce9-48d6-b83a-a717417072ce";
const LAUNCHER: &str = "a9e17000-0000-4000-8000-000000000002";

#[test]
fn extraction_finds_the_documented_bytes() {
    let m05 = std::fs::read(vectors_dir().join("m05-tenant-added-value.bin")).expect("m05");
    assert_eq!(
        payloads_in(&m05, b"tenant_added:"),
        vec![TENANT_ADDED.as_bytes().to_vec()]
    );
}

#[test]
fn tenant_added_vectors() {
    // 01, 04, 08, 12, 13 (traced), m05, m08, p01, p02.
    let (n, ta) = round_trip_all::<TenantAdded>("tenant_added:\n");
    assert_eq!(n, 9);
    assert_eq!(ta.agent_uuid, LAUNCHER);
    assert_eq!(ta.agent_ip, "10.99.0.2");
    assert_eq!(ta.tenant_uuid, TENANT);
    assert_eq!(ta.tenant_subnet, "172.16.1.0/24");
    assert_eq!(ta.concentrator_uuid, CNCI);
    assert_eq!(ta.concentrator_ip, "10.99.0.3");
    assert_eq!(ta.subnet_key, 69804);
    assert_eq!((ta.tunnel_kind, ta.tunnel_id), (None, None));
    assert_eq!(ta.concentrator().expect("canonical").to_string(), CNCI);
    let rs = ta
        .remote_subnet()
        .expect("the Go launcher's event is valid");
    assert_eq!(rs.agent_ip, Ipv4Addr::new(10, 99, 0, 2));
    assert_eq!(rs.subnet.to_string(), "172.16.1.0/24");
    assert_eq!(
        (rs.subnet_key, rs.tunnel_kind, rs.tunnel_id),
        (69804, TunnelKind::Gretap, 69804)
    );
}

#[test]
fn tenant_removed_vectors() {
    // 01, 04, 08, m06.
    let (n, tr) = round_trip_all::<TenantRemoved>("tenant_removed:\n");
    assert_eq!(n, 4);
    assert_eq!(tr.subnet_key, 69804);
    assert!(tr.remote_subnet().is_ok());
}

#[test]
fn ready_vectors() {
    // 01, m04, p01.
    let (n, ready) = round_trip_all::<Ready>("node_uuid: ");
    assert_eq!(n, 3);
    assert_eq!(ready.node_uuid, LAUNCHER);
    assert_eq!((ready.mem_total_mb, ready.mem_available_mb), (16000, 15000));
    assert_eq!(
        (ready.disk_total_mb, ready.disk_available_mb),
        (100000, 90000)
    );
    assert_eq!((ready.load, ready.cpus_online), (0, 8));
    assert_eq!(
        ready.networks,
        vec![NetworkStat {
            ip: "10.99.0.2".into(),
            mac: "02:fc:00:00:00:02".into()
        }]
    );
    assert_eq!(ready.hostname, "cn1");
}

#[test]
fn configure_vectors() {
    // CONNECTED in 02, 04, 06, 08, 13, m07.
    let (n, conf) = round_trip_all::<Configure>("configure:\n");
    assert_eq!(n, 6);
    assert_eq!(
        conf.scheduler.storage_uri,
        "file:///etc/ciao/test/conf/configuration.yaml"
    );
    assert_eq!(conf.storage.ceph_id, "ciao");
    assert_eq!(conf.controller.ciao_port, 8889);
    assert_eq!(conf.controller.admin_ssh_key, "");
    assert_eq!(conf.controller.cnci_net, "192.168.0.0");
    let launcher = &conf.launcher;
    assert_eq!(launcher.compute_net, vec!["10.99.0.0/24".to_owned()]);
    let nets = launcher.compute_nets().expect("CIDRs");
    assert_eq!(nets[0].network(), Ipv4Addr::new(10, 99, 0, 0));
    assert_eq!(launcher.mgmt_nets().expect("CIDRs")[0].prefix_len(), 24);
    assert!(launcher.disk_limit && launcher.mem_limit);
    assert_eq!(launcher.child_user, "");
}

#[test]
fn concentrator_instance_added_vectors() {
    // 03, 06 (test CNCI), 07 and m11 (real ciao-cnci-agent, `tenant_uuid: ""`).
    let (n, _) = round_trip_all::<ConcentratorInstanceAdded>("concentrator_instance_added:\n");
    assert_eq!(n, 4);
    let real = std::fs::read(vectors_dir().join("m11-real-cnci-added-value.bin")).expect("m11");
    let payload = &payloads_in(&real, b"concentrator_instance_added:")[0];
    let cia = ConcentratorInstanceAdded::from_yaml(payload).expect("parses");
    assert_eq!(cia.instance_uuid, CNCI);
    assert_eq!(cia.tenant_uuid, "");
    assert_eq!(cia.concentrator_ip, "10.99.0.3");
    assert_eq!(cia.concentrator_mac, "02:00:0a:63:00:03");
    assert!(text(&cia.to_yaml()).contains("\n  tenant_uuid: \"\"\n"));
}

#[test]
fn public_ip_vectors() {
    // 04, 05, 08, m09.
    let (n, assign) = round_trip_all::<AssignPublicIp>("assign_public_ip:\n");
    assert_eq!(n, 4);
    assert_eq!(assign.concentrator().expect("uuid").to_string(), CNCI);
    assert_eq!(
        assign.addresses().expect("addresses"),
        (Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(172, 16, 1, 2))
    );
    assert_eq!(
        (assign.tenant_uuid.as_str(), assign.instance_uuid.as_str()),
        (TENANT, INSTANCE)
    );
    assert_eq!(assign.vnic_mac, "02:00:ac:10:01:02");
    // 04, 05, 08.
    let (n, release) = round_trip_all::<ReleasePublicIp>("release_public_ip:\n");
    assert_eq!(n, 3);
    assert_eq!(release.0, assign.0);
    // 03, 06, 07.
    let (n, assigned) = round_trip_all::<PublicIpAssigned>("public_ip_assigned:\n");
    assert_eq!(n, 3);
    assert_eq!(assigned.0, PublicIpEvent::from(&assign.0));
    let (n, unassigned) = round_trip_all::<PublicIpUnassigned>("public_ip_unassigned:\n");
    assert_eq!(n, 3);
    assert_eq!(unassigned.0, assigned.0);
}

#[test]
fn public_ip_failure_vectors() {
    // ERROR 7 in 03 and 06; flat, so it starts with the first field.
    let (n, failure) = round_trip_all::<AssignPublicIpFailure>("concentrator_uuid: ");
    assert_eq!(n, 2);
    assert_eq!(failure.reason, PublicIpFailureReason::AssignFailure);
    let cmd = PublicIpCommand {
        concentrator_uuid: CNCI.into(),
        tenant_uuid: TENANT.into(),
        instance_uuid: INSTANCE.into(),
        public_ip: "203.0.113.10".into(),
        private_ip: "172.16.1.2".into(),
        vnic_mac: "02:00:ac:10:01:02".into(),
    };
    let built = PublicIpFailure::for_command(&cmd, PublicIpFailureReason::AssignFailure);
    assert_eq!(failure.0, built);
    // ERROR 8 has the same text (no capture exists; the operand tells them apart).
    assert_eq!(UnassignPublicIpFailure(built).to_yaml(), failure.to_yaml());
}

#[test]
fn refresh_cnci_vectors() {
    // 04, 05, 08, m10.
    let (n, refresh) = round_trip_all::<RefreshCnci>("cnci_refresh:\n");
    assert_eq!(n, 4);
    assert_eq!(refresh.cnci().expect("uuid").to_string(), CNCI);
    assert_eq!(refresh.cncis.len(), 2);
    let second = &refresh.cncis[1];
    assert_eq!(
        second.physical_addr().expect("ip"),
        Ipv4Addr::new(10, 99, 0, 4)
    );
    assert_eq!(second.subnet().expect("cidr").to_string(), "172.16.2.0/24");
    assert_eq!(
        second.tunnel_addr().expect("ip"),
        Ipv4Addr::new(192, 168, 0, 2)
    );
    assert_eq!(second.tunnel_id, 4242);
}

#[test]
fn node_event_vectors() {
    let (n, connected) = round_trip_all::<NodeConnected>("node_connected:\n");
    assert_eq!(n, 1);
    assert_eq!(connected.node_uuid, LAUNCHER);
    assert_eq!(connected.node_type, NodeType::ComputeNode);
    let (n, disconnected) = round_trip_all::<NodeDisconnected>("node_disconnected:\n");
    assert_eq!(n, 1);
    assert_eq!(disconnected.0, connected.0);
}

#[test]
fn built_tenant_event_equals_the_go_launchers() {
    let uuid = |s: &str| uuid::Uuid::parse_str(s).expect("uuid");
    let body = TenantAddedEvent::new(
        uuid(LAUNCHER),
        Ipv4Addr::new(10, 99, 0, 2),
        uuid(TENANT),
        "172.16.1.0/24".parse().expect("cidr"),
        uuid(CNCI),
        Ipv4Addr::new(10, 99, 0, 3),
    );
    assert_eq!(text(&TenantAdded(body.clone()).to_yaml()), TENANT_ADDED);
    let extended = TenantAdded(body.with_tunnel(TunnelKind::Vxlan, 42)).to_yaml();
    let want = format!("{TENANT_ADDED}  tunnel_kind: vxlan\n  tunnel_id: 42\n");
    assert_eq!(text(&extended), want);
    let back = TenantAdded::from_yaml(&extended).expect("parses");
    let rs = back.remote_subnet().expect("valid");
    assert_eq!((rs.tunnel_kind, rs.tunnel_id), (TunnelKind::Vxlan, 42));
}

#[test]
fn parsing_is_lenient_like_yaml_v2() {
    let yaml = "# comment\nother: [1, 2]\ntenant_added:\n  subnet_key: 69804\n  future_key: {a: b}\n  \
                tenant_subnet: 172.16.1.0/24\n  agent_ip: ~\n  concentrator_uuid: 3390740c-dce9-48d6-b83a-a717417072ce\n";
    let ta = TenantAdded::from_yaml(yaml.as_bytes()).expect("unknown keys and any order are fine");
    assert_eq!(ta.subnet_key, 69804);
    assert_eq!(ta.agent_ip, "");
    assert_eq!(ta.agent_uuid, "");
    // Missing keys only matter when acting on them.
    let err = ta.remote_subnet().expect_err("no agent_ip");
    assert!(
        matches!(
            err,
            PayloadError::Missing {
                key: "agent_ip",
                ..
            }
        ),
        "{err}"
    );
    // yaml.v2 reads YAML 1.1 booleans and puts any scalar into a string.
    let conf =
        Configure::from_yaml(b"configure:\n  launcher:\n    disk_limit: yes\n    child_user: 12\n")
            .expect("parses");
    assert!(conf.launcher.disk_limit);
    assert_eq!(conf.launcher.child_user, "12");
    assert_eq!(conf.controller, ControllerConfig::default());
    // A flat payload with nothing in it is all zero values, as in Go.
    assert_eq!(Ready::from_yaml(b"").expect("empty"), Ready::default());
}

#[test]
fn errors_name_payload_and_key() {
    let missing =
        TenantAdded::from_yaml(b"tenant_removed:\n  subnet_key: 1\n").expect_err("wrong key");
    assert!(matches!(
        missing,
        PayloadError::Missing {
            key: "tenant_added",
            ..
        }
    ));
    assert!(TenantAdded::from_yaml(b"").is_err());
    assert!(TenantAdded::from_yaml(b"tenant_added:\n").is_err());

    let bad_type = TenantAdded::from_yaml(b"tenant_added:\n  subnet_key: abc\n").expect_err("type");
    let msg = bad_type.to_string();
    assert!(
        msg.starts_with("tenant_added payload: ") && msg.contains("subnet_key"),
        "{msg}"
    );

    let bad_kind =
        TenantAdded::from_yaml(b"tenant_added:\n  tunnel_kind: ipip\n").expect_err("kind");
    assert!(bad_kind.to_string().contains("tunnel_kind"), "{bad_kind}");

    let not_yaml = Ready::from_yaml(b"node_uuid: [unclosed\n").expect_err("syntax");
    assert!(
        not_yaml.to_string().starts_with("READY payload: "),
        "{not_yaml}"
    );
}

fn tenant(subnet: &str, key: i64) -> TenantAdded {
    let mut ta = TenantAdded::from_yaml(TENANT_ADDED.as_bytes()).expect("parses");
    ta.tenant_subnet = subnet.into();
    ta.subnet_key = key;
    ta
}

#[test]
fn subnet_key_is_checked_like_the_go_cnci() {
    assert_eq!(subnet_key(Ipv4Addr::new(172, 16, 1, 0)), 69804);
    // The network address counts, as with Go's ParseCIDR.
    assert!(tenant("172.16.1.9/24", 69804).remote_subnet().is_ok());
    let err = tenant("172.16.2.0/24", 69804)
        .remote_subnet()
        .expect_err("mismatch");
    assert!(
        matches!(
            err,
            PayloadError::SubnetKeyMismatch {
                expected: 135340,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("subnet_key 69804"), "{err}");
    let zero = tenant("0.0.0.0/8", 0)
        .remote_subnet()
        .expect_err("zero key");
    assert!(matches!(
        zero,
        PayloadError::Missing {
            key: "subnet_key",
            ..
        }
    ));
    let negative = tenant("172.16.1.0/24", -1)
        .remote_subnet()
        .expect_err("negative");
    assert!(matches!(negative, PayloadError::SubnetKeyMismatch { .. }));
    let bad = tenant("172.16.1.0", 69804)
        .remote_subnet()
        .expect_err("no prefix");
    assert!(
        matches!(
            bad,
            PayloadError::Invalid {
                key: "tenant_subnet",
                ..
            }
        ),
        "{bad}"
    );
    let mut ta = tenant("172.16.1.0/24", 69804);
    ta.agent_ip = "cn1".into();
    let err = ta.remote_subnet().expect_err("bad ip");
    assert!(
        matches!(
            err,
            PayloadError::Invalid {
                key: "agent_ip",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn upper_case_concentrator_is_detected() {
    let mut ta = tenant("172.16.1.0/24", 69804);
    ta.concentrator_uuid = CNCI.to_uppercase();
    assert!(!is_canonical_uuid(&ta.concentrator_uuid));
    assert!(is_canonical_uuid(CNCI));
    let err = ta.concentrator().expect_err("the scheduler would drop it");
    assert!(
        matches!(
            err,
            PayloadError::Invalid {
                key: "concentrator_uuid",
                ..
            }
        ),
        "{err}"
    );
    ta.concentrator_uuid.clear();
    assert!(matches!(
        ta.concentrator(),
        Err(PayloadError::Missing { .. })
    ));
}

#[test]
fn subnets() {
    let s: Ipv4Subnet = "10.1.2.3/16".parse().expect("cidr");
    assert_eq!(s.to_string(), "10.1.0.0/16");
    assert_eq!(s.subnet_key(), subnet_key(Ipv4Addr::new(10, 1, 0, 0)));
    for bad in [
        "10.1.2.3",
        "10.1.2.3/33",
        "10.1.2.3/+8",
        "10.1.2/8",
        "/8",
        "10.1.2.3/",
    ] {
        assert!(bad.parse::<Ipv4Subnet>().is_err(), "{bad}");
    }
    assert_eq!(
        Ipv4Subnet::new(Ipv4Addr::new(1, 2, 3, 4), 0).map(|s| s.network()),
        Some(Ipv4Addr::UNSPECIFIED)
    );
    assert!(Ipv4Subnet::new(Ipv4Addr::new(1, 2, 3, 4), 33).is_none());
}

/// Strings that exercise quoting: mostly printable ASCII (quotes, `:`, `#`, `-`, long runs with
/// spaces that fold), sometimes anything.
fn wire_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~]{0,100}",
        2 => "(true|no|~|null|[0-9]{1,3}|[0-9]{2}:[0-5][0-9]|2018-0[1-9]-1[0-9]|0x1f|1e3|\\.5)",
        1 => any::<String>(),
        1 => "[ a\n'\"\\\\\t:#\u{85}\u{a0}\u{2028}\u{feff}é😀-]{0,40}",
    ]
}

fn tenant_event() -> impl Strategy<Value = TenantAddedEvent> {
    (
        [
            wire_string(),
            wire_string(),
            wire_string(),
            wire_string(),
            wire_string(),
            wire_string(),
        ],
        any::<i64>(),
        proptest::option::of(prop_oneof![
            Just(TunnelKind::Vxlan),
            Just(TunnelKind::Gretap),
            Just(TunnelKind::Geneve)
        ]),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|([a, b, c, d, e, f], subnet_key, tunnel_kind, tunnel_id)| {
            TenantAddedEvent {
                agent_uuid: a,
                agent_ip: b,
                tenant_uuid: c,
                tenant_subnet: d,
                concentrator_uuid: e,
                concentrator_ip: f,
                subnet_key,
                tunnel_kind,
                tunnel_id,
            }
        })
}

fn public_ip_command() -> impl Strategy<Value = PublicIpCommand> {
    [
        wire_string(),
        wire_string(),
        wire_string(),
        wire_string(),
        wire_string(),
        wire_string(),
    ]
    .prop_map(|[a, b, c, d, e, f]| PublicIpCommand {
        concentrator_uuid: a,
        tenant_uuid: b,
        instance_uuid: c,
        public_ip: d,
        private_ip: e,
        vnic_mac: f,
    })
}

fn round_trips<P: Payload + PartialEq + std::fmt::Debug>(p: &P) -> Result<(), TestCaseError> {
    let yaml = p.to_yaml();
    let back = P::from_yaml(&yaml)
        .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&yaml))))?;
    prop_assert_eq!(&back, p, "{}", String::from_utf8_lossy(&yaml));
    Ok(())
}

proptest! {
    #[test]
    fn tenant_events_round_trip(body in tenant_event()) {
        round_trips(&TenantAdded(body.clone()))?;
        round_trips(&TenantRemoved(body))?;
    }

    #[test]
    fn public_ip_payloads_round_trip(cmd in public_ip_command(), reason in wire_string()) {
        round_trips(&AssignPublicIp(cmd.clone()))?;
        round_trips(&ReleasePublicIp(cmd.clone()))?;
        round_trips(&PublicIpAssigned(PublicIpEvent::from(&cmd)))?;
        round_trips(&PublicIpUnassigned(PublicIpEvent::from(&cmd)))?;
        let failure = PublicIpFailure::for_command(&cmd, PublicIpFailureReason::from(reason.as_str()));
        round_trips(&AssignPublicIpFailure(failure.clone()))?;
        round_trips(&UnassignPublicIpFailure(failure))?;
    }
}

#[test]
fn tricky_strings_round_trip() {
    let long = vec!["word"; 30].join(" ");
    let cases = [
        "",
        " ",
        "a\n",
        "\n",
        "a\nb",
        "a\n\nb",
        "\u{2028}x",
        "it's",
        "'",
        "\"",
        "- x",
        "-x",
        ": x",
        "a: b",
        "a #b",
        "#x",
        "---",
        "...x",
        "y",
        "NULL",
        "0o17",
        "1_0",
        "02:00:10:01:00:02",
        "tab\tx",
        "\u{85}",
        "\u{feff}",
        "😀",
        &long,
        &format!("{long}  two  spaces"),
        &format!("'{long}'"),
        &format!("{long}\n{long}"),
    ];
    for s in cases {
        let mut ta = tenant("172.16.1.0/24", 69804);
        ta.agent_uuid = s.to_owned();
        let yaml = ta.to_yaml();
        let back =
            TenantAdded::from_yaml(&yaml).unwrap_or_else(|e| panic!("{s:?}: {e}\n{}", text(&yaml)));
        assert_eq!(back.agent_uuid, s, "{}", text(&yaml));
    }
}

#[test]
fn tenant_sync_round_trips_and_checks_every_entry() {
    let agent = "f8a4f4c5-6d4e-4b3e-9d6c-1b2a3c4d5e6f";
    let cnci = "3390740c-dce9-48d6-b83a-a717417072ce";
    let tenant_uuid = "2491851d-dce9-48d6-b83a-a717417072ce";
    let entry = |subnet: &str| {
        let s: Ipv4Subnet = subnet.parse().expect("subnet");
        TenantAddedEvent::new(
            agent.parse().expect("agent"),
            Ipv4Addr::new(10, 99, 0, 1),
            tenant_uuid.parse().expect("tenant"),
            s,
            cnci.parse().expect("cnci"),
            Ipv4Addr::new(10, 99, 0, 3),
        )
        .with_tunnel(TunnelKind::Vxlan, 42)
    };
    let sync = TenantSync(TenantSyncEvent {
        agent_uuid: agent.into(),
        concentrator_uuid: cnci.into(),
        tenant_uuid: tenant_uuid.into(),
        subnets: vec![entry("172.16.1.0/24"), entry("172.16.2.0/24")],
    });
    let back = TenantSync::from_yaml(&sync.to_yaml()).expect("parse");
    assert_eq!(back.0, sync.0);
    assert_eq!(back.concentrator().expect("cnci").to_string(), cnci);
    assert_eq!(back.agent().expect("agent").to_string(), agent);
    let subnets = back.remote_subnets().expect("entries");
    assert_eq!(subnets.len(), 2);
    assert_eq!(subnets[1].tunnel_id, 42);

    let empty = TenantSync(TenantSyncEvent {
        subnets: Vec::new(),
        ..sync.0.clone()
    });
    let back = TenantSync::from_yaml(&empty.to_yaml()).expect("empty parses");
    assert!(back.remote_subnets().expect("no entries").is_empty());

    let mut forged = sync.0.clone();
    forged.subnets[1].agent_uuid = "00000000-0000-0000-0000-000000000001".into();
    let err = TenantSync(forged)
        .remote_subnets()
        .expect_err("foreign entry");
    assert!(err.to_string().contains("subnets.agent_uuid"), "{err}");
}
