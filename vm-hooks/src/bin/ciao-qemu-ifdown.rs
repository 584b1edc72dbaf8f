//! `ciao-qemu-ifdown <tap>`: QEMU's `downscript=`; detaches the tap (idempotent).

fn main() -> std::process::ExitCode {
    vm_hooks::main_with("ciao-qemu-ifdown", |tap, env| {
        vm_hooks::ifdown(tap, env).map(|_| ())
    })
}
