//! A process killed at each kernel call of an attach: the next call on the same state directory
//! and the same world undoes it, and a retry then gives exactly the clean result.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::*;
use crate::fake::{Fault, InjectedCrash, Trigger};

#[test]
fn a_crash_at_each_kernel_call_of_a_first_attach_is_undone_then_retried_cleanly() {
    let clean = clean_attach("c1");
    assert!(
        clean.calls.len() >= 15,
        "a first veth attach makes many kernel calls: {:?}",
        clean.calls
    );
    for step in 1..=clean.calls.len() {
        let bench = Bench::new();
        let mut node = bench.node();
        node.view().expect("view");
        assert_eq!(bench.picture(), clean.before, "step {step}: a fresh bench");
        bench.world.clear_calls();
        bench.world.inject(Trigger::Nth(step), Fault::Panic);
        let killed = catch_unwind(AssertUnwindSafe(|| {
            let _ = node.attach(&subnet(), &veth(&bench, "c1"));
        }))
        .expect_err("the process dies at the injected call");
        let at = killed.downcast_ref::<InjectedCrash>().expect("our crash");
        assert_eq!(at.op, clean.calls[step - 1], "step {step}");
        drop(node);

        // The next process: any call first finishes or undoes what the dead one left.
        let mut next = bench.node();
        next.view().expect("recovering view");
        assert_eq!(
            bench.picture(),
            clean.before,
            "step {step} ({}): undone to the clean before-state, journal empty",
            at.op
        );
        next.attach(&subnet(), &veth(&bench, "c1"))
            .unwrap_or_else(|e| panic!("step {step}: retry: {e}"));
        assert_eq!(bench.picture(), clean.after, "step {step}: retried cleanly");
        assert_eq!(events(&bench), [ReportEvent::TenantAdded], "step {step}");
    }
}

#[test]
fn a_crash_at_each_kernel_call_of_a_second_attach_leaves_the_first_alone() {
    let bench = Bench::new();
    let mut node = bench.node();
    node.attach(&subnet(), &veth(&bench, "first"))
        .expect("first attach");
    let before = bench.picture();
    bench.world.clear_calls();
    let second = Bench::new();
    let mut probe = second.node();
    probe
        .attach(&subnet(), &veth(&second, "first"))
        .expect("probe 1");
    second.world.clear_calls();
    probe
        .attach(&subnet(), &veth_named(&second, "second", "eth1"))
        .expect("probe 2");
    let steps = second.world.calls().len();
    assert!(steps >= 8, "{:?}", second.world.calls());
    for step in 1..=steps {
        bench.world.clear_calls();
        bench.world.inject(Trigger::Nth(step), Fault::Panic);
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _ = node.attach(&subnet(), &veth_named(&bench, "second", "eth1"));
        }))
        .expect_err("killed");
        node = bench.node();
        node.view().expect("recover");
        assert_eq!(
            bench.picture(),
            before,
            "step {step}: the first VNIC untouched"
        );
        assert_eq!(events(&bench), [ReportEvent::TenantAdded], "step {step}");
    }
}

#[test]
fn a_crash_at_each_kernel_call_of_a_last_detach_is_finished_by_the_next_call() {
    let probe = Bench::new();
    let mut node = probe.node();
    node.view().expect("open");
    let clean = probe.picture();
    let a = node.attach(&subnet(), &veth(&probe, "a")).expect("attach");
    probe.world.clear_calls();
    node.detach(&subnet().net_key(), &a.vnic.id)
        .expect("detach");
    let steps = probe.world.calls().len();
    assert!(steps >= 5, "{:?}", probe.world.calls());
    for step in 1..=steps {
        let bench = Bench::new();
        let mut node = bench.node();
        let a = node.attach(&subnet(), &veth(&bench, "a")).expect("attach");
        bench.world.clear_calls();
        bench.world.inject(Trigger::Nth(step), Fault::Panic);
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _ = node.detach(&subnet().net_key(), &a.vnic.id);
        }))
        .expect_err("killed");
        let mut next = bench.node();
        next.view().expect("recover");
        let (world, mut state) = bench.picture();
        state.retain(|f| !f.starts_with("reports/"));
        assert_eq!((world, state), clean, "step {step}: finished");
        assert_eq!(
            events(&bench),
            [ReportEvent::TenantAdded, ReportEvent::TenantRemoved],
            "step {step}: one TenantRemoved"
        );
    }
}
