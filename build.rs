//! Links the `microseed` binary as a position-dependent executable.
//!
//! A PIE binary of this size carries ~65,000 relative relocations that the
//! dynamic loader applies at every start, writing ~1.7 MB of `.data.rel.ro`
//! (page faults and copies): about half of a `check`'s start-up. Without PIE
//! the linker resolves them once. Shared libraries, the stack and the heap
//! stay randomized; only the executable's own image sits at a fixed address,
//! which matters to an attacker only after a memory-safety bug. Packagers
//! whose policy requires PIE build with `MICROSEED_PIE=1` (see
//! docs/performance.md). Test binaries are untouched.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MICROSEED_PIE");
    let pie = std::env::var_os("MICROSEED_PIE").is_some_and(|v| v == "1");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !pie && target.contains("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
