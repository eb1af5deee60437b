#!/usr/bin/env bash
# Runs every microseed test on a fresh Debian machine: installs what the
# tests need (apt packages listed in scripts/deps/*.apt, Python modules),
# then lint, unit and integration tests, then the subiquity dry-run tier
# beside the booted-VM acceptance run.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --quick    # skip the VM acceptance run
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

log() { printf '==> %s\n' "$*"; }

# 1. apt packages, installed only when missing.
mapfile -t wanted < <(cat scripts/deps/*.apt | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # No service may start on a test machine.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    rm -f /usr/sbin/policy-rc.d
fi

# 2. Python modules for the PyYAML read-back and the autoinstall schema.
if ! python3 -c 'import yaml, jsonschema' 2>/dev/null; then
    log "installing PyYAML and jsonschema"
    python3 -m pip install -q --disable-pip-version-check pyyaml jsonschema
fi

# 3. Lint, then every Rust test.
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets -- -D warnings
log "cargo test"
cargo test --release -- --test-threads="${MICROSEED_TEST_THREADS:-2}"

# 4. The installer's own check of the seeds (subiquity --dry-run at every
# revision of the bundle in ../shared/tools/subiquity/; without the bundle the
# tier says plainly that it did not run) and 5. the booted-VM acceptance run.
# The tier is mostly the installer's own waiting (about 85 s of CPU in 7
# minutes), so it runs beside the acceptance boots instead of before them.
tier_log=$(mktemp)
run_tier() {
    MICROSEED_BIN=target/release/microseed scripts/subiquity-tier.sh --setup > "$tier_log" 2>&1
}
finish_tier() {  # pid
    local rc=0
    wait "$1" || rc=$?
    log "subiquity dry-run tier (rc=$rc)"
    cat "$tier_log"
    rm -f "$tier_log"
    return "$rc"
}
if [ "$quick" = 0 ] && [ -x scripts/acceptance.sh ]; then
    log "acceptance: building the VM image (cached; outside the run's 25-minute bound)"
    scripts/acceptance.sh build
    log "subiquity dry-run tier: started beside the acceptance run"
    run_tier &
    tier_pid=$!
    log "acceptance: booting every role's seed in a VM"
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    cp examples/vm-lab/cluster.yaml "$out/cluster.yaml"
    cp tests/fixtures/secrets.yaml "$out/secrets.yaml"
    chmod 600 "$out/secrets.yaml"
    # A key made for this run, among the admin's keys: the run ends with
    # `microseed status` logging in to the booted machines with it.
    ssh-keygen -q -t ed25519 -N '' -C microseed-acceptance -f "$out/admin-key"
    sed -i "/^  ssh_keys:\$/a\\    - $(cat "$out/admin-key.pub")" "$out/cluster.yaml"
    grep -qF "$(cut -d' ' -f2 "$out/admin-key.pub")" "$out/cluster.yaml"
    acc_rc=0
    cargo run --release --quiet -- build "$out/cluster.yaml" -o "$out/seeds" --target cloud-image --format dir,seed-img \
        && MICROSEED_BIN=target/release/microseed scripts/acceptance.sh \
            --cluster "$out/cluster.yaml" --ssh-key "$out/admin-key" "$out/seeds" || acc_rc=$?
    tier_rc=0
    finish_tier "$tier_pid" || tier_rc=$?
    [ "$acc_rc" = 0 ] || { log "acceptance FAILED (rc=$acc_rc)"; exit 1; }
    [ "$tier_rc" = 0 ] || { log "subiquity tier FAILED (rc=$tier_rc)"; exit 1; }
else
    run_tier &
    finish_tier $!
fi
log "all tests passed"
