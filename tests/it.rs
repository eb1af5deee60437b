//! microseed's integration tests: one binary (one link, one place to look),
//! one module per concern, each file in tests/ saying what it pins and which
//! real consumer it puts the output in front of. Run one concern with
//! `cargo test --test it status::`; Cargo.toml lists this as the only test
//! target but for the property tests (`autotests = false`), so a new
//! tests/*.rs joins by a `mod` line here.

mod common;
mod iso_common;

mod build_output;
mod cli;
mod cloud_init;
mod convergence;
mod first_boot;
mod flash;
mod injection;
mod input_errors;
mod install_phase;
mod installer_boot;
mod installer_cli;
mod installer_image;
mod interrupt;
mod iso_download;
mod iso_input;
mod never_crash;
mod output_safety;
mod pxe;
mod seed_image;
mod semantic_checks;
mod serve;
mod serve_limits;
mod ssh_keys;
mod staking_values;
mod status;
mod validation;
mod verify;
