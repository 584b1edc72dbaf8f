//! The store's half of security groups: a version 3 file gains each tenant's default group on
//! migration (once) and the default ingress action `allow`, and a forgotten tenant takes its
//! groups, rules, forwards, blocks and ingress rules along.

mod common;

use ciao_controller::security::forward::ForwardSpec;
use ciao_controller::security::ingress_rule::{IngressAction, IngressRuleRequest};
use ciao_controller::security::{Direction, Remote};
use ciao_controller::sqlite::schema::{MIGRATIONS, SCHEMA_VERSION};
use ciao_controller::{CnciState, SqliteStore, Store, STORE_FILE};
use ciao_types::TunnelKind;
use common::{ip, net, network_node, rows, store};
use rusqlite::Connection;
use uuid::Uuid;

#[test]
fn a_version_3_file_gives_every_tenant_its_default_group_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(STORE_FILE);
    let tenants = [Uuid::from_u128(1), Uuid::from_u128(2)];
    {
        let conn = Connection::open(&path).expect("create v3");
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL);")
            .expect("version table");
        conn.execute("INSERT INTO schema_version VALUES (3)", [])
            .expect("v3");
        for migration in &MIGRATIONS[..3] {
            conn.execute_batch(migration).expect("v3 schema");
        }
        for t in tenants {
            conn.execute("INSERT INTO tenants VALUES (?1, 'active')", [t.to_string()])
                .expect("tenant");
        }
    }
    let store = SqliteStore::open(&path).expect("migrate");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let mut ids = Vec::new();
    for t in tenants {
        let groups = store.security_groups(t).expect("groups");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].name, "default");
        ids.push(groups[0].uuid);
        let rules = store.security_rules(t).expect("rules");
        assert_eq!(rules.len(), 4);
        let from_self = rules
            .iter()
            .filter(|r| r.spec.direction == Direction::Ingress)
            .all(|r| r.spec.remote == Remote::Group(groups[0].uuid));
        assert!(from_self, "ingress only from the group itself: {rules:?}");
        let ingress = store.ingress_rules(t).expect("ingress rules");
        assert_eq!(
            ingress.default,
            IngressAction::Allow,
            "nothing changes for it"
        );
        assert!(ingress.rules.is_empty());
    }
    drop(store);
    // Opening again migrates nothing and makes no second group.
    let store = SqliteStore::open(&path).expect("reopen");
    for (t, id) in tenants.iter().zip(&ids) {
        let groups = store.security_groups(*t).expect("groups");
        assert_eq!(groups.iter().map(|g| g.uuid).collect::<Vec<_>>(), [*id]);
    }
    assert_eq!(rows(&store, "security_rules"), 8);
}

#[test]
fn a_forgotten_tenant_takes_its_groups_forwards_ssh_blocks_and_ingress_rules_along() {
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    let tenant = Uuid::new_v4();
    let cn = Uuid::new_v4();
    store
        .set_public_pools(&["203.0.113.0/30".parse().expect("pool")])
        .expect("pools");
    let a = store
        .request_subnet(tenant, net("10.0.0.0/24"), TunnelKind::Vxlan, cn)
        .expect("subnet");
    store
        .create_security_group(tenant, "web", "")
        .expect("group");
    store.set_ssh(tenant, true).expect("ssh");
    let spec = ForwardSpec {
        protocol: "tcp".parse().expect("tcp"),
        public_port: 80,
        private: ip("10.0.0.5"),
        private_port: 80,
        public: None,
    };
    store.add_forward(tenant, &spec).expect("forward");
    let (rule, _) = IngressRuleRequest {
        action: "deny".into(),
        protocol: "any".into(),
        ..IngressRuleRequest::default()
    }
    .check()
    .expect("rule");
    store
        .add_ingress_rule(tenant, &rule, None)
        .expect("ingress rule");
    store
        .subnet_left(tenant, net("10.0.0.0/24"), cn)
        .expect("left");
    store.delete_tenant(tenant).expect("delete");
    store
        .set_cnci_state(a.cnci.uuid, CnciState::Gone, None)
        .expect("gone");
    for table in [
        "security_groups",
        "security_rules",
        "forwards",
        "ssh_blocks",
        "ingress_rules",
        "tenants",
    ] {
        assert_eq!(rows(&store, table), 0, "{table}");
    }
    // The forward IP is free again.
    let other = Uuid::new_v4();
    store
        .request_subnet(other, net("10.0.0.0/24"), TunnelKind::Vxlan, cn)
        .expect("other");
    assert_eq!(
        store.add_forward(other, &spec).expect("forward").public,
        ip("203.0.113.1")
    );
}

#[test]
fn a_cluster_default_of_on_gives_existing_tenants_their_blocks_at_start() {
    use ciao_controller::security::forward::SshPolicy;
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    store
        .set_public_pools(&["203.0.113.0/30".parse().expect("pool")])
        .expect("pools");
    let (small, big) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let cn = Uuid::new_v4();
    store
        .request_subnet(small, net("10.0.0.0/24"), TunnelKind::Vxlan, cn)
        .expect("small");
    store
        .request_subnet(big, net("10.0.0.0/16"), TunnelKind::Vxlan, cn)
        .expect("big");
    let policy = SshPolicy {
        default: true,
        port_base: 33000,
    };
    store.set_ssh_policy(policy).expect("policy");
    let access = store.ssh_access(small).expect("small");
    assert!(access.enabled && !access.chosen);
    assert_eq!(access.forward_ip, Some(ip("203.0.113.1")));
    assert_eq!((access.blocks[0].base, access.blocks[0].size), (33000, 256));
    // A /16 never fits: that tenant is left without blocks, and the start goes on.
    let access = store.ssh_access(big).expect("big");
    assert!(access.enabled && access.blocks.is_empty() && access.forward_ip.is_none());
    // Again (a restart): the same.
    store.set_ssh_policy(policy).expect("policy again");
    assert_eq!(rows(&store, "ssh_blocks"), 1);
}
