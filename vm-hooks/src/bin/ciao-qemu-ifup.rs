//! `ciao-qemu-ifup <tap>`: QEMU's `script=`; attaches the tap to its tenant subnet's bridge.

fn main() -> std::process::ExitCode {
    vm_hooks::main_with("ciao-qemu-ifup", |tap, env| {
        let up = vm_hooks::ifup(tap, env)?;
        for stale in &up.stale_removed {
            eprintln!("ciao-qemu-ifup: {tap}: dropped the record of {stale}, left by a QEMU killed before its ifdown");
        }
        Ok(())
    })
}
