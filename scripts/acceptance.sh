#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Boot every machine's seed in a Debian VM (qemu, software emulation) and
# assert from the report the VM writes. See usage().
set -euo pipefail

# shellcheck source=ci-lib/common.sh
. "$(dirname "$0")/ci-lib/common.sh"
# shellcheck source=ci-lib/recipe-bookworm-vm.sh
. "$MS_LIB_DIR/recipe-bookworm-vm.sh"

MS_BOOT_TIMEOUT="${MS_BOOT_TIMEOUT:-600}"
MS_TOTAL_TIMEOUT="${MS_TOTAL_TIMEOUT:-1500}"

usage() {
    cat <<'EOF'
usage: acceptance.sh [--out DIR] SEED_IMG_DIR
       acceptance.sh build [--force]
       acceptance.sh boot SEED_IMG MAC WORKDIR

SEED_IMG_DIR/<machine>/ must hold seed.img (the NoCloud seed disk), meta-data
(local-hostname) and network-config (netplan v2 with "match: macaddress",
static addresses, gateway; v1 is read too). The role of a machine is the
content of <machine>/role if present, else "nfs", "master" or "worker" when
the machine's name contains one of them, else none (generic checks only).
Each machine is booted once (timeout ${MS_BOOT_TIMEOUT}s; the whole run is
bounded by ${MS_TOTAL_TIMEOUT}s) and checked: generic assertions here, then
scripts/ci-lib/acceptance-<role>.sh REPORT. Results, reports and console logs
land in --out DIR (default: a new /tmp/microseed-acceptance.XXXXXX).

build   build (or reuse) the VM in $MICROSEED_TEST_CACHE/bookworm-vm
boot    one boot: writes WORKDIR/console.log and WORKDIR/report.txt
EOF
}

vm_dir() { printf '%s/bookworm-vm\n' "$(ms_cache_dir)"; }

cmd_build() {
    local force="${1:-}" dest files
    ms_need_root
    dest="$(vm_dir)"
    mapfile -t files < <(ms_bookworm_recipe_files)
    ms_lock bookworm-vm
    if [[ "$force" != "--force" ]] && ms_cache_fresh "$dest" "${files[@]}" && [[ -s "$dest/root.img" ]]; then
        ms_log "VM image up to date: $dest"
        return 0
    fi
    ms_apt_deps "$MS_REPO_DIR/scripts/deps/vmtest.apt"
    ms_umount_tree "$dest.new"
    rm -rf "$dest.new" "$dest.recipe-sha256"
    ms_on_exit "ms_umount_tree '$dest.new'; rm -rf '$dest.new'"
    local t0=$SECONDS
    ms_build_bookworm_vm "$dest.new"
    ms_umount_tree "$dest"
    rm -rf "$dest"
    mv "$dest.new" "$dest"
    ms_cache_stamp "$dest" "${files[@]}"
    ms_log "built $dest in $((SECONDS - t0)) s"
}

case "${1:-}" in
build) shift; cmd_build "$@" ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
