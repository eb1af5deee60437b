//! `cargo bench`: fleet-scale timings of the release binary against the
//! tools a user would otherwise run (cloud-localds per seed, cp of the
//! ISO), printed as ratios with PASS/MISS per target.
//!
//! The measuring is a shell script (benches/fleet.sh) because it drives
//! other programs (hyperfine, cloud-localds, /usr/bin/time, xorriso); this
//! target gives it the binary cargo built with the bench (release) profile,
//! so the figures are never those of a stale or debug build.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // libtest-style flags cargo passes (`--bench`, filters) mean nothing here.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fleet.sh");
    let status = Command::new("bash")
        .arg(script)
        .env("MICROSEED_BIN", env!("CARGO_BIN_EXE_microseed"))
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("benches/fleet.sh failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("running benches/fleet.sh: {e}");
            ExitCode::FAILURE
        }
    }
}
