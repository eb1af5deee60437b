#!/usr/bin/env bash
# Fleet-scale benchmarks: `cargo bench` (benches/fleet.rs runs
# benches/fleet.sh with the release binary). Kept because older notes and
# docs name this script; the environment variables it documents
# (BENCH_DIR, BENCH_RUNS, BENCH_SIZES...) pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench fleet
