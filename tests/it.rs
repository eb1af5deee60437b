//! microseed's integration tests: one binary (one link, one place to look),
//! one module per concern, each file in tests/ saying what it pins and which
//! real consumer it puts the output in front of. Run one concern with
//! `cargo test --test it status::`; Cargo.toml lists this as the only test
//! target but for the property tests (`autotests = false`), so a new
//! tests/*.rs joins by a `mod` line here.

mod common;
mod iso_common;

mod api_vip;
mod build_output;
mod cli;
mod cloud_init;
mod convergence;
mod discover;
mod docs;
mod first_boot;
mod flash;
mod ha;
mod injection;
mod input_errors;
mod install_phase;
mod installer_boot;
mod installer_cli;
mod installer_image;
mod interrupt;
mod iso_download;
mod iso_input;
mod leftovers;
mod never_crash;
mod output_safety;
mod pxe;
mod pxe_boot;
mod seed_image;
mod semantic_checks;
mod serve;
mod serve_limits;
mod snap_refresh;
mod ssh_keys;
mod staking;
mod status;
mod stick_select;
mod test_scripts;
mod validation;
mod verify;
mod vm_lab;

/// With `autotests = false` a file in tests/ that no `mod` line names is
/// never compiled, so its tests would silently not run: fail instead.
#[test]
fn every_test_file_is_a_module_of_this_binary_or_its_own_target() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let me = std::fs::read_to_string(root.join("tests/it.rs")).expect("tests/it.rs");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let mut orphans = Vec::new();
    for e in std::fs::read_dir(root.join("tests")).expect("tests/") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        let own_target = manifest.contains(&format!("path = \"tests/{name}\""));
        if stem != "it" && !own_target && !me.contains(&format!("\nmod {stem};\n")) {
            orphans.push(name);
        }
    }
    assert!(
        orphans.is_empty(),
        "tests/ files no target compiles (add `mod NAME;` to tests/it.rs): {orphans:?}"
    );
}
