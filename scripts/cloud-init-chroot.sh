#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# cloud-init applying a NoCloud seed without a VM, in a Debian trixie chroot
# (cloud-init 25.x). See usage() and tests/fixtures/sample-seed/.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=recipes/recipe-trixie-cloudinit.sh
. "$MS_SCRIPTS_DIR/recipes/recipe-trixie-cloudinit.sh"
# shellcheck source=recipes/recipe-bookworm-vm.sh
. "$MS_SCRIPTS_DIR/recipes/recipe-bookworm-vm.sh"

usage() {
    cat <<'EOF'
usage: cloud-init-chroot.sh build [--force]
       cloud-init-chroot.sh schema [cloud-config|network-config] FILE
       cloud-init-chroot.sh apply SEED OUTDIR [--mac MAC]... [--no-snap] [--fake-master IP]
                                [--ssh-socket]
       cloud-init-chroot.sh path

build   Build (or reuse) the trixie chroot in $MICROSEED_TEST_CACHE/trixie-cloudinit
        (default cache /var/cache/microseed-test). Rebuilt only when missing or
        when scripts/recipes/recipe-trixie-cloudinit.sh changed.
schema  Validate FILE with cloud-init 25.x in the chroot; kind defaults to
        cloud-config ("cloud-init schema -c FILE --annotate"); network-config
        runs "cloud-init schema -t network-config -c FILE". Exit code passed through.
apply   Run cloud-init's four stages on SEED (a directory holding user-data,
        meta-data[, network-config], or a seed disk image: plain FAT or a
        partition table with a FAT partition labelled CIDATA) in isolated
        namespaces over an overlay of the chroot, then copy results to OUTDIR.
        --mac MAC adds a NIC with that MAC (repeatable); by default one NIC
        per "macaddress:" found in the seed's network-config.
        After cloud-init, each enabled microseed step unit's ExecStart runs
        once, in step order, as a boot would (steps.log); then
        microseed-status (microseed-status.txt, .rc).
        --no-snap leaves snap and microk8s out, so MicroK8s steps fail.
        --ssh-socket enables ssh.socket instead of ssh.service (Ubuntu 22.10+
        socket activation). systemctl starts nothing in the chroot, so the
        socket never listens on a moved port: microseed-ssh must roll back.
        --fake-master IP answers as the master at IP while the steps run
        (a worker's join fetches and checks the master's proof; the
        machine's own copy of the master's fingerprint script answers, with
        a fresh agent certificate whose sha256 is in fake-master.sha256).
        Exit status: 0 when cloud-init status is "done" without errors,
        1 otherwise (OUTDIR is filled either way), 2 on usage/setup errors.
path    Print the chroot path.
EOF
}

cache_root() { printf '%s/trixie-cloudinit\n' "$(ms_cache_dir)"; }

cmd_build() {
    local force="${1:-}" dest
    ms_need_root
    dest="$(cache_root)"
    ms_lock trixie-cloudinit
    if [[ "$force" != "--force" ]] && ms_cache_fresh "$dest" "$MS_SCRIPTS_DIR/recipes/recipe-trixie-cloudinit.sh"; then
        ms_log "trixie chroot up to date: $dest"
        ms_unlock
        return 0
    fi
    ms_apt_deps "$MS_REPO_DIR/scripts/deps/vmtest.apt"
    rm -f "$dest.recipe-sha256"
    [[ "$force" == --force ]] && rm -f "$dest.base-sha256"
    ms_on_exit "ms_umount_tree '$dest'"
    local t0=$SECONDS
    ms_build_trixie_cloudinit "$dest"
    ms_cache_stamp "$dest" "$MS_SCRIPTS_DIR/recipes/recipe-trixie-cloudinit.sh"
    ms_unlock
    ms_log "built $dest in $((SECONDS - t0)) s"
}

ensure_built() {
    if ! ms_cache_fresh "$(cache_root)" "$MS_SCRIPTS_DIR/recipes/recipe-trixie-cloudinit.sh"; then
        ms_log "trixie chroot missing or stale: building it first"
        cmd_build
    fi
    # Shared while in use: a rebuild (exclusive) waits for running applies.
    ms_lock trixie-cloudinit --shared
}

ns_run() {
    ms_tied unshare --mount --uts --net --ipc --pid --fork --kill-child -- "$MS_SCRIPTS_DIR/vm/chroot-ns.sh" "$@"
}

cmd_schema() {
    local kind=cloud-config file
    case "${1:-}" in
    cloud-config | network-config) kind="$1"; shift ;;
    esac
    [[ $# -eq 1 ]] || { usage >&2; exit 2; }
    file="$(realpath -e "$1")" || ms_die "no such file: $1"
    ms_need_root
    ensure_built
    ns_run schema "$(cache_root)" "$kind" "$file"
}

# find_cidata IMG: print "OFFSET SIZE" (bytes) of the CIDATA filesystem in IMG
# (the image itself, or one of its partitions).
find_cidata() {
    local img="$1" nr start sectors label
    label="$(blkid -c /dev/null -p -o value -s LABEL "$img" 2>/dev/null || true)"
    if [[ "${label,,}" == cidata ]]; then
        echo "0 $(stat -c %s "$img")"
        return 0
    fi
    while read -r nr start sectors; do
        [[ "$nr" =~ ^[0-9]+$ ]] || continue
        label="$(blkid -c /dev/null -p -O $((start * 512)) -o value -s LABEL "$img" 2>/dev/null || true)"
        if [[ "${label,,}" == cidata ]]; then
            echo "$((start * 512)) $((sectors * 512))"
            return 0
        fi
    done < <(partx -g -o NR,START,SECTORS "$img" 2>/dev/null || true)
    return 1
}

cmd_apply() {
    local seed="" out="" macs=() a
    while [[ $# -gt 0 ]]; do
        a="$1"
        shift
        case "$a" in
        --mac)
            [[ $# -gt 0 ]] || ms_die "--mac needs a value"
            [[ "$1" =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || ms_die "bad MAC: $1"
            macs+=("${1,,}")
            shift
            ;;
        --no-snap) export MS_NO_SNAP=1 ;;
        --ssh-socket) export MS_SSH_SOCKET=1 ;;
        --fake-master)
            [[ "${1:-}" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || ms_die "--fake-master needs an IPv4 address"
            export MS_FAKE_MASTER="$1"
            shift
            ;;
        -*) ms_die "unknown option $a" ;;
        *)
            if [[ -z "$seed" ]]; then seed="$a"
            elif [[ -z "$out" ]]; then out="$a"
            else usage >&2; exit 2
            fi
            ;;
        esac
    done
    [[ -n "$seed" && -n "$out" ]] || { usage >&2; exit 2; }
    ms_need_root
    [[ -e "$seed" ]] || ms_die "seed $seed does not exist"
    seed="$(realpath -e "$seed")"
    mkdir -p "$out"
    out="$(realpath -e "$out")"
    if [[ -n "$(ls -A "$out")" && ! -e "$out/.microseed-apply" ]]; then
        ms_die "OUTDIR $out is not empty and was not made by apply: refusing to clear it"
    fi
    ensure_built
    local t0=$SECONDS
    ms_umount_tree "$out/.merged"
    rm -rf "${out:?}"/* "$out/.merged" "$out/.work"
    touch "$out/.microseed-apply"
    mkdir -p "$out/seed"

    local kind loop=""
    if [[ -d "$seed" ]]; then
        kind=dir
        [[ -f "$seed/user-data" && -f "$seed/meta-data" ]] ||
            ms_die "seed directory $seed lacks user-data or meta-data"
        cp "$seed"/{user-data,meta-data} "$out/seed/"
        [[ -f "$seed/network-config" ]] && cp "$seed/network-config" "$out/seed/"
        [[ -f "$seed/vendor-data" ]] && cp "$seed/vendor-data" "$out/seed/"
    else
        kind=dev
        local loc off size
        loc="$(find_cidata "$seed")" || ms_die "no filesystem labelled CIDATA in $seed (neither the image nor a partition)"
        read -r off size <<<"$loc"
        loop="$(losetup -r -f --show -o "$off" --sizelimit "$size" "$seed")" ||
            ms_die "losetup of $seed failed"
        ms_on_exit "losetup -d '$loop'"
        local f
        for f in user-data meta-data network-config vendor-data; do
            mcopy -n -i "$loop" "::$f" "$out/seed/$f" 2>/dev/null || true
        done
        [[ -f "$out/seed/user-data" && -f "$out/seed/meta-data" ]] ||
            ms_die "the CIDATA filesystem in $seed lacks user-data or meta-data"
    fi
    if ((${#macs[@]} == 0)); then
        local SEED_MACS=""
        eval "$("$MS_LIB_DIR/seedinfo.py" "$out/seed" | grep '^SEED_MACS=')" ||
            ms_die "could not read $out/seed/network-config"
        read -r -a macs <<<"$SEED_MACS"
    fi

    ns_run apply "$(cache_root)" "$out" "$kind" "$out/seed" "$loop" "${macs[@]}" ||
        ms_die "the namespace run failed (see messages above; partial results in $out)"
    rm -rf "$out/.merged" "$out/.work"
    local rc
    rc="$(cat "$out/status.rc")"
    {
        echo "seed: $seed ($kind${loop:+, $loop})"
        echo "nics: ${macs[*]:-none}"
        cat "$out/datasource.txt"
        cat "$out/stages.rc"
        echo "status rc=$rc"
        cat "$out/status.txt"
    } >"$out/summary.txt"
    ms_log "applied in $((SECONDS - t0)) s; results in $out"
    cat "$out/summary.txt" >&2
    if [[ "$rc" == 0 ]] && grep -q '^status: done' "$out/status.txt"; then
        return 0
    fi
    return 1
}

case "${1:-}" in
build) shift; cmd_build "$@" ;;
schema) shift; cmd_schema "$@" ;;
apply) shift; cmd_apply "$@" ;;
path) cache_root ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
