//! The cluster configuration a scheduler sends in CONNECTED: the default, an operator's file
//! read as Go reads it (ciao's defaults for keys left out) but strictly, and the errors.

use std::path::PathBuf;

use ssntp::frame::{FrameDecoder, Incoming};
use ssntp::payloads::{Configure, ConfigurePayload, Payload};

/// The default, exactly as sent (yaml.v2's text for ciao's `InitDefaults`).
const DEFAULT_YAML: &str = "\
configure:
  scheduler:
    storage_uri: \"\"
  storage:
    ceph_id: \"\"
  controller:
    ciao_port: 8889
    compute_ca: \"\"
    compute_cert: \"\"
    cnci_vcpus: 4
    cnci_mem: 2048
    cnci_disk: 2048
    admin_ssh_key: \"\"
    client_auth_ca_cert_path: \"\"
    cnci_net: 192.168.0.0
  launcher:
    compute_net: []
    mgmt_net: []
    disk_limit: true
    mem_limit: true
    child_user: \"\"
";

fn refused(yaml: &str) -> String {
    match Configure::from_operator_yaml(yaml.as_bytes()) {
        Ok(c) => panic!("accepted {yaml:?} as {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_default_is_ciaos_defaults_and_valid() {
    let default = Configure::cluster_default();
    assert_eq!(String::from_utf8_lossy(&default.to_yaml()), DEFAULT_YAML);
    default.validate().expect("the default is valid");
    // Read back by the lenient (Go) parser and by the strict one: the same configuration.
    assert_eq!(
        Configure::from_yaml(DEFAULT_YAML.as_bytes()).expect("parses"),
        default
    );
    assert_eq!(
        Configure::from_operator_yaml(DEFAULT_YAML.as_bytes()).expect("valid file"),
        default
    );
}

#[test]
fn keys_left_out_of_a_file_take_ciaos_defaults() {
    let conf = Configure::from_operator_yaml(
        b"configure:\n  launcher:\n    compute_net:\n    - 10.99.0.0/24\n    mem_limit: false\n",
    )
    .expect("valid");
    let mut expected = ConfigurePayload::ciao_defaults();
    expected.launcher.compute_net = vec!["10.99.0.0/24".into()];
    expected.launcher.mem_limit = false;
    assert_eq!(conf.0, expected);
}

/// The Go scheduler re-marshals its file: a file holding what it sent reads back to the same
/// bytes (the CONNECTED payload of the capture, m07).
#[test]
fn the_go_schedulers_configuration_reads_back_to_its_bytes() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/ssntp-vectors");
    let stream = std::fs::read(dir.join("02-launcher-s2c.bin")).expect("02");
    let messages = FrameDecoder::new().decode_stream(&stream).expect("decode");
    let Some(Incoming::Connected(connected)) = messages.first() else {
        panic!("02 starts with CONNECTED");
    };
    let conf = Configure::from_operator_yaml(&connected.payload).expect("Go's is valid");
    assert_eq!(conf.to_yaml(), connected.payload);
}

#[test]
fn bad_files_are_refused_naming_the_key() {
    for (yaml, names) in [
        (
            "configure:\n  launcher:\n    compute_nets: []\n",
            "configure.launcher.compute_nets",
        ),
        ("configure:\n  launchr: {}\n", "configure.launchr"),
        ("configure: {}\nextra: 1\n", "`extra`"),
        (
            "configure:\n  launcher:\n    compute_net: [10.0.0.0/33]\n",
            "launcher.compute_net",
        ),
        (
            "configure:\n  launcher:\n    mgmt_net: [nope]\n",
            "launcher.mgmt_net",
        ),
        (
            "configure:\n  controller:\n    cnci_net: 192.168.0.0/16\n",
            "controller.cnci_net",
        ),
        (
            "configure:\n  controller:\n    ciao_port: 70000\n",
            "controller.ciao_port",
        ),
        (
            "configure:\n  controller:\n    ciao_port:\n",
            "controller.ciao_port",
        ),
        (
            "configure:\n  controller:\n    cnci_mem: -1\n",
            "controller.cnci_mem",
        ),
        (
            "configure:\n  controller:\n    ciao_port: abc\n",
            "ciao_port",
        ),
        ("launcher: {}\n", "extra"),
        ("- 1\n", "configure"),
    ] {
        let err = refused(yaml);
        let names = if names == "extra" {
            "`launcher`"
        } else {
            names
        };
        assert!(err.contains(names), "{yaml:?}: {err}");
    }
    assert!(refused("configure: [\n").contains("cluster configuration"));
}
