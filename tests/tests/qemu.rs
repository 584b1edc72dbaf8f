//! Real QEMU guests on the whole-cluster fixture, with `ciao-qemu-ifup`/`ciao-qemu-ifdown` as
//! QEMU's `script=`/`downscript=`. Run alone with `cargo test -p ciao-tests --test qemu`.
//!
//! The guest (Debian kernel + busybox initramfs, built by `scripts/qemu-guest.sh`) gets its
//! address by DHCP from its tenant's CNCI and pings; QEMU runs under TCG (about 5-15 s a guest).
//! Without network access to fetch QEMU the tests are skipped by name.

use std::sync::Mutex;
use std::time::Duration;

use testkit::cluster::{Cluster, Cn, Tenant};
use testkit::qemu::{image_or_skip, start_hooked, Guest, GuestImage, HookedVm};
use testkit::{require_root, ComputeNode, TENANT_A, TENANT_B};

const SUBNET: &str = "172.16.1.0/24";
const CONTAINER_IP: &str = "172.16.1.11";
const VM_IP: &str = "172.16.1.32";
/// ciao's MAC of `VM_IP`: the CNCI's DHCP answers it with `VM_IP`.
const VM_MAC: &str = "02:00:ac:10:01:20";
const GUEST_TIMEOUT: Duration = Duration::from_secs(150);

/// TCG guests are CPU-bound: two at once on a 2-core machine would each take twice as long.
static ONE_GUEST_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A VM of tenant `t` with `VM_IP` on `node`, started by QEMU with the hooks.
fn start_vm(image: &GuestImage, node: &ComputeNode, t: &Tenant, tap: &str, append: &str) -> Guest {
    let vm = HookedVm {
        subnet: SUBNET,
        ip: VM_IP,
        mac: VM_MAC,
        tap,
        append,
    };
    start_hooked(image, node, t, &vm).expect("start qemu")
}

/// After the guest powered off: QEMU ran ifdown and exited 0; the VNIC and, being the subnet's
/// last on CN1, the bridge and tunnel are gone; the hub forgets CN1 (`remaining`: the nodes it
/// keeps).
fn assert_vm_gone(c: &Cluster, t: &Tenant, guest: &mut Guest, tap: &str, remaining: &[&str]) {
    let status = guest
        .wait_exit(Duration::from_secs(30))
        .expect("qemu exits after the guest's poweroff");
    assert!(status.success(), "qemu: {status}\n{}", guest.qemu_text());
    assert!(
        !c.cn1.ns.links().contains(&tap.to_string()),
        "QEMU removed its tap"
    );
    let links = c.cn1.ciao_links();
    assert!(links.is_empty(), "links left on CN1: {links:?}");
    let left: Vec<String> = c
        .cn1
        .state_entries()
        .into_iter()
        // The running daemon's lock and socket stay.
        .filter(|e| !e.starts_with("reports/") && e != "delivery.lock" && e != "node.sock")
        .collect();
    assert!(left.is_empty(), "state left on CN1: {left:?}");
    c.wait_programmed(t, SUBNET, remaining)
        .expect("the hub drops CN1 after TenantRemoved");
}

#[test]
fn a_vm_gets_its_address_from_the_cnci_and_reaches_a_container_on_another_node() {
    require_root!();
    let test = "qemu::a_vm_gets_its_address_from_the_cnci_and_reaches_a_container_on_another_node";
    let Some(image) = image_or_skip(test) else {
        return;
    };
    let _one = ONE_GUEST_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new().expect("cluster");
    let a = c.add_tenant(TENANT_A).expect("tenant A");
    let _ctr = c
        .container(Cn::Cn2, &a, SUBNET, CONTAINER_IP)
        .expect("container on CN2");
    c.wait_programmed(&a, SUBNET, &[Cn::Cn2.ip()])
        .expect("hub has CN2");

    let tap = "tapvma0";
    let mut guest = start_vm(
        &image,
        &c.cn1,
        &a,
        tap,
        &format!("ciao.ping={CONTAINER_IP}"),
    );
    let (dhcp, at) = guest
        .wait_line("CIAO-GUEST dhcp", GUEST_TIMEOUT)
        .expect("the guest tries DHCP");
    assert!(
        dhcp.contains(&format!("dhcp ok ip={VM_IP}/24 router=172.16.1.1 mtu=1450")),
        "DHCP from the CNCI: {dhcp}\n{}",
        guest.serial_text()
    );
    // ifup ran before the guest: CN1's subnet is on the hub now.
    c.wait_programmed(&a, SUBNET, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("ifup's TenantAdded reached the hub");
    let (ping, done) = guest
        .wait_line(&format!("ping ok {CONTAINER_IP}"), GUEST_TIMEOUT)
        .expect("the guest reaches the container on CN2");
    eprintln!("qemu start to lease {at:?}, to first ping reply {done:?}: {ping}");
    assert_vm_gone(&c, &a, &mut guest, tap, &[Cn::Cn2.ip()]);
}

#[test]
fn a_vm_of_another_tenant_with_the_same_subnet_cannot_reach_the_container() {
    require_root!();
    let test = "qemu::a_vm_of_another_tenant_with_the_same_subnet_cannot_reach_the_container";
    let Some(image) = image_or_skip(test) else {
        return;
    };
    let _one = ONE_GUEST_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new().expect("cluster");
    let a = c.add_tenant(TENANT_A).expect("tenant A");
    let b = c.add_tenant(TENANT_B).expect("tenant B");
    let _ctr = c
        .container(Cn::Cn2, &a, SUBNET, CONTAINER_IP)
        .expect("A's container on CN2");
    c.wait_programmed(&a, SUBNET, &[Cn::Cn2.ip()])
        .expect("A's hub has CN2");

    let tap = "tapvmb0";
    // B's own gateway answers (its network works), A's container never does.
    let mut guest = start_vm(
        &image,
        &c.cn1,
        &b,
        tap,
        &format!("ciao.ping=172.16.1.1,{CONTAINER_IP} ciao.tries=5"),
    );
    let (dhcp, _) = guest
        .wait_line("CIAO-GUEST dhcp", GUEST_TIMEOUT)
        .expect("the guest tries DHCP");
    assert!(
        dhcp.contains(&format!("dhcp ok ip={VM_IP}/24 router=172.16.1.1")),
        "DHCP from B's CNCI: {dhcp}\n{}",
        guest.serial_text()
    );
    c.wait_programmed(&b, SUBNET, &[Cn::Cn1.ip()])
        .expect("B's hub has CN1");
    guest
        .wait_line("CIAO-GUEST done", GUEST_TIMEOUT)
        .expect("the guest finishes");
    let serial = guest.serial_text();
    assert!(
        serial.contains("ping ok 172.16.1.1 "),
        "B's gateway answers B's VM:\n{serial}"
    );
    assert!(
        serial.contains(&format!("ping failed {CONTAINER_IP}")),
        "A's container must not answer B's VM:\n{serial}"
    );
    // A's hub never heard of CN1.
    c.wait_programmed(&a, SUBNET, &[Cn::Cn2.ip()])
        .expect("A's hub has only CN2");
    assert_vm_gone(&c, &b, &mut guest, tap, &[]);
}
