#!/usr/bin/env bash
# The installer's own check of microseed's seeds: runs Ubuntu's installer,
# subiquity, in its --dry-run mode at every revision the bundle in
# ../shared/tools/subiquity/ holds, on every role's seed from the example and
# on the 22.04 example's and on variant seeds
# (tests/fixtures/subiquity/variants*.yaml), and judges the
# installed system after microseed's late-commands (scripts/checks/subiquity-verdict.py).
#
#   scripts/subiquity-tier.sh            # needs a harness built by --setup
#   scripts/subiquity-tier.sh --setup    # build the harness first (root)
#
# Without the bundle (a clone of the project alone) it says plainly that it
# did not run, and why, and exits 0: every other test still stands.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=../shared/tools/subiquity/subiquity-dryrun.sh
H=${SQ_HARNESS:-/var/tmp/subiquity-harness}

notrun() {
    echo "subiquity tier: NOT RUN: $*"
    echo "subiquity tier: the seeds were NOT checked by the installer (subiquity dry-run)"
    exit 0
}
[ -x "$tool" ] || notrun "$tool is missing (the bundle lives beside the project, in ../shared/tools/subiquity/, not in a clone)"
[ "$(id -u)" = 0 ] || notrun "the dry-run harness needs root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The bundle's tool and its Python leave temporary directories behind
# (mkdtemp, never removed): all of them go under this run's own, removed
# with it.
export TMPDIR="$work/tmp"
mkdir "$TMPDIR"
if [ "${1:-}" = --setup ]; then
    echo "subiquity tier: building the harness in $H"
    setup_log=$(mktemp)
    if ! "$tool" --setup > "$setup_log" 2>&1; then
        tail -20 "$setup_log"
        echo "subiquity tier: FAIL: --setup"
        exit 1
    fi
    rm -f "$setup_log"
fi

bin=${MICROSEED_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=target/release/microseed
fi
build() {  # cluster-file out
    mkdir -p "$work/$2"
    cp "$1" "$work/$2/cluster.yaml"
    install -m 600 tests/fixtures/secrets.yaml "$work/$2/secrets.yaml"
    "$bin" build "$work/$2/cluster.yaml" -o "$work/$2/seeds" --format dir > /dev/null
}
build examples/eth2-staking/cluster.yaml example
build examples/eth2-staking-22.04/cluster.yaml example-2204
build tests/fixtures/subiquity/variants.yaml variants
build tests/fixtures/subiquity/variants-20.04.yaml variants-2004
build tests/fixtures/subiquity/data-disk-22.04.yaml data-disk
build tests/fixtures/subiquity/data-disk-20.04.yaml data-disk-2004

# seed  host name  expected disk  storage mode  machine config  revisions
#   [a disk no storage action may name: the NFS data disk]
# A seed runs at the revisions of its release's installers: 20.04 media
# carried 20.04.3 (GA) and later ones; 22.04 seeds use the single
# `network:` form, which the 20.04 GA installer cannot read (its netplan
# generate fails), so they run at 22.07.2 only. The 20.04 variants (short
# serial, MAC renamed, ID_SERIAL glob, disk path) run at 20.04.3, the
# revision that crashed on a short serial; 22.07.2 reads the same disk and
# NIC matches in the 22.04 variants.
simple=$H/sq-22.07.2/examples/simple.json
twodisk=$H/machine-2disk-2nic.json
focal="20.04.3,22.07.2"
ga="20.04.3"
jammy="22.07.2"
runs=(
    "example/seeds/nfs nfs /dev/sda root $simple $focal"
    "example/seeds/master master /dev/sda root $simple $focal"
    "example/seeds/worker-1 worker-1 /dev/sda root $simple $focal"
    "example-2204/seeds/nfs nfs /dev/sda root $simple $jammy"
    "example-2204/seeds/master master /dev/sda root $simple $jammy"
    "example-2204/seeds/worker-1 worker-1 /dev/sda root $simple $jammy"
    "variants-2004/seeds/nfs nfs /dev/sdb data $twodisk $ga"
    "variants-2004/seeds/master master /dev/sdb root $twodisk $ga"
    "variants-2004/seeds/worker-1 worker-1 /dev/sdb root $twodisk $ga"
    "variants/seeds/nfs nfs /dev/sdb data $twodisk $jammy"
    "variants/seeds/master master /dev/sdb root $twodisk $jammy"
    "variants/seeds/worker-1 worker-1 /dev/sdb root $twodisk $jammy"
    "data-disk-2004/seeds/nfs nfs /dev/sda root $twodisk $ga /dev/sdb"
    "data-disk/seeds/nfs nfs /dev/sda root $twodisk $jammy /dev/sdb"
)
fail=0
start=$SECONDS
for r in "${runs[@]}"; do
    read -r seed host disk mode mc revs untouched <<< "$r"
    export SQ_VERSIONS=${revs//,/ }
    wd=$work/run-${seed//\//-}
    # 20.04.3 runs late-commands with no TARGET_MOUNT_POINT of its own (on a
    # real machine the target is /target): point it at a scratch target.
    mkdir -p "$wd/target-20.04.3/etc"
    TARGET_MOUNT_POINT=$wd/target-20.04.3 SQ_MACHINE_CONFIG=$mc \
        "$tool" "$work/$seed/user-data" "$wd/out" > "$wd/tool.log" 2>&1 || true
    echo "== $seed (disk $disk, storage $mode, $(basename "$mc"), subiquity $SQ_VERSIONS${untouched:+, data disk $untouched untouched})"
    if SQ_MACHINE_CONFIG=$mc python3 scripts/checks/subiquity-verdict.py "$wd/tool.log" "$wd/out" "$wd/target-20.04.3" "$host" "$disk" "$mode" "$H" ${untouched:+"$untouched"}; then
        :
    else
        fail=1
        echo "---- tool output ----"
        cat "$wd/tool.log"
    fi
done
echo "subiquity tier: ${#runs[@]} seeds, each at its release's revisions, in $((SECONDS - start)) s"
if [ "$fail" = 0 ]; then echo "subiquity tier: PASS"; else echo "subiquity tier: FAIL"; exit 1; fi
