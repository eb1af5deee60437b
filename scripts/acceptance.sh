#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Boot every machine's seed in a Debian VM (qemu, software emulation) and
# assert from the report the VM writes. See usage().
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=recipes/recipe-bookworm-vm.sh
. "$MS_SCRIPTS_DIR/recipes/recipe-bookworm-vm.sh"
# shellcheck source=lib/report.sh
. "$MS_LIB_DIR/report.sh"
# shellcheck source=lib/cluster-phase.sh
. "$MS_LIB_DIR/cluster-phase.sh"

MS_BOOT_TIMEOUT="${MS_BOOT_TIMEOUT:-600}"
# Three machines plus the master's power-cut boot (about 300 s here).
MS_TOTAL_TIMEOUT="${MS_TOTAL_TIMEOUT:-2100}"

usage() {
    cat <<'EOF'
usage: acceptance.sh [--out DIR] [--cluster FILE --ssh-key KEY] SEED_IMG_DIR
       acceptance.sh build [--force]
       acceptance.sh boot SEED_IMG MAC WORKDIR

SEED_IMG_DIR/<machine>/ must hold seed.img (the NoCloud seed disk), meta-data
(local-hostname) and network-config (netplan v2 with "match: macaddress",
static addresses, gateway; v1 is read too). The role of a machine is the
content of <machine>/role if present, else "nfs", "master" or "worker" when
the machine's name contains one of them, else none (generic checks only).
Each machine is booted once (timeout ${MS_BOOT_TIMEOUT}s; the whole run is
bounded by ${MS_TOTAL_TIMEOUT}s), the master twice: first with its power cut
at its first add-on enable, then its disk booted again (MS_POWERCUT=0 skips
that) and checked: generic assertions here, then
scripts/checks/acceptance-<role>.sh REPORT. Results, reports and console logs
land in --out DIR (default: a new /tmp/microseed-acceptance.XXXXXX).
MS_REUSE_REPORTS=1 re-checks complete reports already in --out DIR without
booting (for editing checks and hooks).
MS_RELEASE (default 20.04) is the Ubuntu release the seeds were built for.
Another release boots with microseed.test.ubuntu=RELEASE, which makes the
image behave like that release where the seeds depend on it (24.04:
socket-activated OpenSSH, see scripts/vm/vm-noble-ssh.sh), and every
machine is then also checked by scripts/checks/acceptance-RELEASE.sh.
On 24.04 the first ssh move of the machine whose role is
MS_SSH_MOVE_FAILS_ROLE (default master) fails, proving the rollback.
MS_ONLY="NAME..." boots and checks only those machines of SEED_IMG_DIR; the
others still count as the cluster's machines (a worker's stand-in master
takes the master's address from them). Not with --cluster.
MS_CONVERGE_POLLS=N lets the VM's report wait N polls (default 60, about 3 s
each) for convergence, for a heavily loaded host.

With --cluster FILE (the cluster file the seeds were built from) and
--ssh-key KEY (a private key whose public half is among its admin.ssh_keys),
the machines boot together on one bridge after the master's power-cut boot,
the worker joins the master VM, and the run ends with `microseed status`
against them (MICROSEED_BIN, default target/release/microseed): --wait
must see everything converged, then a failing step and a stopped machine
must give their rows and exit codes (scripts/lib/cluster-phase.sh).
The boots together are bounded by MS_CLUSTER_BOOT_TIMEOUT (1500 s), all of
it by the run's bound.

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
        ms_unlock
        return 0
    fi
    ms_apt_deps "$MS_REPO_DIR/scripts/deps/vmtest.apt"
    rm -f "$dest.recipe-sha256"
    [[ "$force" == --force ]] && rm -f "$dest/root.base-sha256"
    ms_on_exit "ms_umount_tree '$dest'"
    local t0=$SECONDS
    ms_build_bookworm_vm "$dest"
    ms_cache_stamp "$dest" "${files[@]}"
    ms_unlock
    ms_log "built $dest in $((SECONDS - t0)) s"
}

ensure_vm() {
    local files
    mapfile -t files < <(ms_bookworm_recipe_files)
    if ! ms_cache_fresh "$(vm_dir)" "${files[@]}" || [[ ! -s "$(vm_dir)/root.img" ]]; then
        ms_log "VM image missing or stale: building it first"
        cmd_build
    fi
    ms_lock bookworm-vm --shared
}

# cmd_boot SEED_IMG MAC WORKDIR: one boot, bounded by MS_BOOT_TIMEOUT.
# Returns 0 when the report was written completely, 1 otherwise.
cmd_boot() {
    [[ $# -eq 3 ]] || { usage >&2; exit 2; }
    local seed mac="$2" work vm rc=0 t0=$SECONDS
    ms_need_root
    seed="$(realpath -e "$1")" || ms_die "no seed image $1"
    [[ -f "$seed" ]] || ms_die "$seed is not a file"
    mkdir -p "$3"
    work="$(realpath -e "$3")"
    ensure_vm
    vm="$(vm_dir)"
    rm -f "$work/console.log" "$work/report.txt"
    # MS_RESUME=1 boots the disk of the previous boot again (the power-cut
    # test); otherwise every boot starts from the image.
    if [[ -z "${MS_RESUME:-}" || ! -f "$work/overlay.qcow2" ]]; then
        rm -f "$work/overlay.qcow2"
        # The backing path is the one qemu sees inside the chroot (-u: not opened now).
        qemu-img create -q -f qcow2 -F raw -b /tmp/ms/vm/root.img -u "$work/overlay.qcow2" 3G
    fi
    : >"$work/console.log"
    : >"$work/report.txt"
    ms_log "booting $(basename "$(dirname "$seed")") (mac $mac), timeout ${MS_BOOT_TIMEOUT}s"
    ms_timeout "$MS_BOOT_TIMEOUT" unshare --mount --net --pid --ipc --fork --kill-child -- \
        "$MS_SCRIPTS_DIR/vm/qemu-ns.sh" "$vm" "$work" "$seed" "$mac" || rc=$?
    echo "$((SECONDS - t0))" >"$work/boot-seconds"
    if ((rc == 124 || rc == 137)); then
        ms_warn "boot timed out after ${MS_BOOT_TIMEOUT}s"
    elif ((rc != 0)); then
        ms_warn "qemu exited with $rc"
    fi
    if ! grep -q '^===== END microseed-report =====' "$work/report.txt"; then
        ms_warn "no complete report from the VM; console log (last 80 lines of $work/console.log):"
        tail -n 80 "$work/console.log" | tr -d '\r' >&2
        return 1
    fi
    rm -f "$work/overlay.qcow2"
    ms_log "boot done in $((SECONDS - t0)) s"
}

# powercut_boot SEED MAC WORK: first boot with the stand-in microk8s cutting
# the power at its first add-on enable (mid first boot, steps half done),
# then the same disk booted again, which must converge and report.
powercut_boot() {
    local rc=0
    MS_EXTRA_APPEND="microseed.test.poweroff-at-enable${MS_RELEASE_WORD:+ $MS_RELEASE_WORD}" cmd_boot "$@" || rc=$?
    cp "$3/console.log" "$3/console-powercut.log" 2>/dev/null || true
    if ((rc == 0)); then
        ms_warn "the power-cut boot completed its report: the power was never cut"
        return 1
    fi
    grep -q 'cutting the power' "$3/console-powercut.log" ||
        ms_warn "the power-cut boot's console does not show the cut (see $3/console-powercut.log)"
    MS_RESUME=1 MS_EXTRA_APPEND="${MS_RELEASE_WORD:-}" cmd_boot "$@"
}

# run_hook KIND HOOK NAME WORKDIR OUTDIR: a role's or release's checks on
# NAME's report, their lines added to the results; a hook that fails
# without saying which check failed is a failure of its own.
run_hook() {
    local kind="$1" hook="$2" name="$3" work="$4" out="$5" rc=0
    "$hook" "$work/report.txt" | tee -a "$out/results.txt" "$work/checks.txt" || rc=$?
    if ((rc != 0)) && ! grep -q '^not ok - ' "$work/checks.txt"; then
        echo "not ok - $name: $kind hook $hook exited $rc" | tee -a "$out/results.txt" "$work/checks.txt"
    fi
}

# boot_words ROLE MACHINES_FILE: kernel command line words for a boot. A
# worker boots alone, so the image's stand-in answers for its master.
boot_words() {
    local master_ip words=()
    master_ip="$(awk '$2 == "master" { print $3; exit }' "$2")"
    if [[ "$1" == worker && -n "$master_ip" ]]; then
        words+=("microseed.test.fake-master=$master_ip")
    fi
    [[ "$(ms_release)" == 20.04 ]] || words+=("microseed.test.ubuntu=$(ms_release)")
    # 24.04: the first ssh move on this role's machine fails (the socket
    # stays on 22), so the rollback is proven booted (acceptance-24.04.sh).
    if [[ "$(ms_release)" == 24.04 && "$1" == "${MS_SSH_MOVE_FAILS_ROLE:-master}" ]]; then
        words+=("microseed.test.ssh-move-fails-once")
    fi
    [[ -z "${MS_CONVERGE_POLLS:-}" ]] || words+=("microseed.test.converge-polls=$MS_CONVERGE_POLLS")
    echo "${words[*]}"
}

ms_release() { echo "${MS_RELEASE:-20.04}"; }

# apt_list_mode REPORT: apt ran, and never with needrestart allowed to
# restart services (the stand-in apt-get records NEEDRESTART_MODE).
apt_list_mode() {
    local calls
    calls="$(ms_section "$1" fake-apt.calls)"
    grep -q 'apt-get' <<<"$calls" && ! grep -v '^NEEDRESTART_MODE=l apt-get' <<<"$calls" | grep -q .
}

status_done() { grep -q '^status: done' <<<"$1" && grep -q '^rc=0$' <<<"$1"; }

# Generic assertions for one machine; prints ok/not ok lines.
generic_checks() {
    local r="$1" machines="$2" name ip host role
    local status result
    status="$(ms_section "$r" "cloud-init status")"
    result="$(ms_section "$r" result.json)"
    ms_check "$MS_MACHINE: cloud-init status done (rc=0)" status_done "$status"
    ms_check "$MS_MACHINE: result.json has no errors" /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.argv[1])
errs = d.get("v1", {}).get("errors", ["missing v1"])
sys.exit(1 if errs else 0)' "$result"
    ms_check "$MS_MACHINE: seed found on the seed disk (/dev/vdb or /dev/vdb1)" \
        ms_section_has "$r" datasource 'DataSourceNoCloud \[seed=/dev/vdb1?\]'
    ms_check "$MS_MACHINE: hostname is $MS_HOSTNAME" \
        test "$(ms_section "$r" hostname | sed -n 1p)" = "${MS_HOSTNAME%%.*}"
    local a
    for a in $MS_ADDRS; do
        ms_check "$MS_MACHINE: address $a configured" ms_section_has "$r" "ip -4 addr" "inet ${a//./\\.} "
    done
    if [[ -n "$MS_GATEWAY" ]]; then
        ms_check "$MS_MACHINE: default route via $MS_GATEWAY" \
            ms_section_has "$r" "ip route" "^default via ${MS_GATEWAY//./\\.}( |$)"
    fi
    while read -r name role ip host <&3; do
        ms_check "$MS_MACHINE: /etc/hosts lists $name ($ip $host)" \
            ms_section_has "$r" /etc/hosts "^${ip//./\\.}[[:space:]]+(.*[[:space:]])?${host//./\\.}([[:space:]]|$)"
    done 3<"$machines"
    ms_check "$MS_MACHINE: chrony.conf has server/pool lines" \
        ms_section_has "$r" /etc/chrony/chrony.conf '^(server|pool) '
    ms_check "$MS_MACHINE: sshd drop-in present" ms_section_has "$r" sshd_config.d '^--- /etc/ssh/sshd_config.d/'
    ms_check "$MS_MACHINE: sshd -t accepts the config" ms_section_has "$r" "sshd -t" '^rc=0$'
    ms_check "$MS_MACHINE: ufw active" ms_section_has "$r" "ufw status verbose" '^Status: active'
    ms_check "$MS_MACHINE: every apt run had needrestart in list mode" apt_list_mode "$r"
}

machine_role() {
    local dir="$1" name
    name="$(basename "$dir")"
    if [[ -s "$dir/role" ]]; then
        tr -d '[:space:]' <"$dir/role"
    elif [[ "$name" == *nfs* ]]; then echo nfs
    elif [[ "$name" == *master* ]]; then echo master
    elif [[ "$name" == *worker* ]]; then echo worker
    else echo none
    fi
}

cmd_run() {
    local out="" seeds="" cluster="" key="" args=("$@")
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --cluster) cluster="$(realpath -e "${2:?--cluster needs a file}")"; shift 2 ;;
        --ssh-key) key="$(realpath -e "${2:?--ssh-key needs a file}")"; shift 2 ;;
        -*) ms_die "unknown option $1" ;;
        *) [[ -z "$seeds" ]] || { usage >&2; exit 2; }; seeds="$1"; shift ;;
        esac
    done
    [[ -n "$seeds" ]] || { usage >&2; exit 2; }
    [[ -d "$seeds" ]] || ms_die "SEED_IMG_DIR $seeds is not a directory"
    [[ -n "$cluster" && -n "$key" || -z "$cluster$key" ]] || ms_die "--cluster and --ssh-key go together"
    [[ -z "${MS_ONLY:-}" || -z "$cluster" ]] || ms_die "MS_ONLY boots machines alone: not with --cluster"
    ms_need_root
    if [[ -z "${MS_ACCEPTANCE_BOUNDED:-}" ]]; then
        local rc=0
        ms_timeout "$MS_TOTAL_TIMEOUT" env MS_ACCEPTANCE_BOUNDED=1 "$0" "${args[@]}" || rc=$?
        ((rc == 124)) && ms_warn "acceptance run exceeded ${MS_TOTAL_TIMEOUT}s"
        return "$rc"
    fi
    seeds="$(realpath -e "$seeds")"
    [[ -n "$out" ]] || out="$(mktemp -d /tmp/microseed-acceptance.XXXXXX)"
    mkdir -p "$out"
    out="$(realpath -e "$out")"
    ms_log "results in $out"
    ms_apt_deps "$MS_REPO_DIR/scripts/deps/vmtest.apt"
    ensure_vm

    # Machine table: machine role ip hostname (+ per-machine env files).
    local d name machines="$out/machines.txt" any=""
    : >"$machines"
    : >"$out/results.txt"
    for d in "$seeds"/*/; do
        d="${d%/}"
        [[ -f "$d/seed.img" ]] || continue
        name="$(basename "$d")"
        [[ -f "$d/meta-data" && -f "$d/network-config" ]] ||
            ms_die "$d has seed.img but lacks meta-data or network-config"
        "$MS_LIB_DIR/seedinfo.py" "$d" >"$out/$name.env" || ms_die "cannot read the seed files in $d"
        (
            # shellcheck disable=SC1090
            . "$out/$name.env"
            [[ -n "$SEED_MACS" ]] || ms_die "$d/network-config matches no macaddress"
            [[ -n "$SEED_HOSTNAME" ]] || ms_die "$d/meta-data has no local-hostname"
            printf '%s %s %s %s\n' "$name" "$(machine_role "$d")" "${SEED_ADDRS%%/*}" "$SEED_HOSTNAME"
        ) >>"$machines"
        any=1
    done
    [[ -n "$any" ]] || ms_die "no $seeds/<machine>/seed.img found"

    local pass=0 fail=0 role ip host hook rc
    if [[ -n "$cluster" ]]; then
        # Not in a pipeline: the VMs' and the namespace's pids must stay in this shell.
        cluster_boot "$seeds" "$out" "$machines" >"$out/cluster-boot.txt"
        tee -a "$out/results.txt" "$out/cluster-checks.txt" <"$out/cluster-boot.txt"
        MS_MASTER_REPORT="$out/$(awk '$2 == "master" { print $1; exit }' "$machines")/report.txt"
        export MS_MASTER_REPORT
    fi
    # shellcheck disable=SC2094 # machines.txt is only read in this loop
    while read -r name role ip host <&3; do
        local SEED_MACS="" SEED_ADDRS="" SEED_GATEWAY="" SEED_HOSTNAME="" SEED_SSH_PORT=22
        # shellcheck disable=SC1090
        . "$out/$name.env"
        if [[ -n "${MS_ONLY:-}" && " $MS_ONLY " != *" $name "* ]]; then
            ms_log "$name: not booted (MS_ONLY=$MS_ONLY)"
            continue
        fi
        local mac="${SEED_MACS%% *}" work="$out/$name"
        mkdir -p "$work"
        : >"$work/checks.txt"
        if [[ -n "${MS_REUSE_REPORTS:-}" ]] && grep -q '^===== END microseed-report =====' "$work/report.txt" 2>/dev/null; then
            ms_log "$name: reusing $work/report.txt (MS_REUSE_REPORTS)"
        elif [[ -n "$cluster" ]]; then
            if ! grep -q '^===== END microseed-report =====' "$work/report.txt" 2>/dev/null; then
                echo "not ok - $name: booted on the shared network, wrote a complete report" | tee -a "$out/results.txt"
                ms_warn "$name: console tail ($work/console.log)"
                tail -n 60 "$work/console.log" | tr -d '\r' >&2
                fail=$((fail + 1))
                continue
            fi
        elif [[ "$role" == master && "${MS_POWERCUT:-1}" == 1 ]] &&
            ! MS_RELEASE_WORD="$(boot_words master "$machines")" powercut_boot "$seeds/$name/seed.img" "$mac" "$work" </dev/null; then
            echo "not ok - $name: power cut mid first boot, then a boot that resumes" | tee -a "$out/results.txt"
            fail=$((fail + 1))
            continue
        elif [[ "$role" != master || "${MS_POWERCUT:-1}" != 1 ]] &&
            ! MS_EXTRA_APPEND="$(boot_words "$role" "$machines")" cmd_boot "$seeds/$name/seed.img" "$mac" "$work" </dev/null; then
            echo "not ok - $name: boot produced a complete report" | tee -a "$out/results.txt"
            fail=$((fail + 1))
            continue
        fi
        export MS_MACHINE="$name" MS_ROLE="$role" MS_IP="$ip" MS_HOSTNAME="$SEED_HOSTNAME" \
            MS_ADDRS="$SEED_ADDRS" MS_GATEWAY="$SEED_GATEWAY" MS_MACHINES_FILE="$machines" \
            MS_SSH_PORT="$SEED_SSH_PORT" MS_RELEASE="${MS_RELEASE:-20.04}"
        MS_CHECK_FAIL=0 MS_CHECK_PASS=0
        generic_checks "$work/report.txt" "$machines" | tee -a "$out/results.txt" "$work/checks.txt" ||
            echo "not ok - $name: generic checks crashed" | tee -a "$out/results.txt" "$work/checks.txt"
        hook="$MS_SCRIPTS_DIR/checks/acceptance-$role.sh"
        if [[ -x "$hook" ]]; then
            run_hook role "$hook" "$name" "$work" "$out"
        elif [[ "$role" != none ]]; then
            echo "not ok - $name: no hook for role $role ($hook)" | tee -a "$out/results.txt" "$work/checks.txt"
        fi
        # What this release changes on every machine (acceptance-24.04.sh).
        hook="$MS_SCRIPTS_DIR/checks/acceptance-$(ms_release).sh"
        if [[ -x "$hook" ]]; then
            run_hook release "$hook" "$name" "$work" "$out"
        fi
        if grep -q '^not ok - ' "$work/checks.txt" && [[ -s "$work/console.log" ]]; then
            ms_warn "$name failed checks; datasource section and console tail follow"
            ms_section "$work/report.txt" datasource >&2
            tail -n 40 "$work/console.log" | tr -d '\r' >&2
        fi
        pass=$((pass + $(grep -c '^ok - ' "$work/checks.txt" || true)))
        fail=$((fail + $(grep -c '^not ok - ' "$work/checks.txt" || true)))
    done 3<"$machines"
    if [[ -n "$cluster" ]]; then
        MS_CHECK_FAIL=0 MS_CHECK_PASS=0
        cluster_status_checks "$out" "$machines" "$cluster" "$key" >"$out/cluster-status.txt" ||
            echo "not ok - microseed status checks crashed" >>"$out/cluster-status.txt"
        tee -a "$out/results.txt" "$out/cluster-checks.txt" <"$out/cluster-status.txt"
        cluster_vms_down
        pass=$((pass + $(grep -c '^ok - ' "$out/cluster-checks.txt" || true)))
        fail=$((fail + $(grep -c '^not ok - ' "$out/cluster-checks.txt" || true)))
    fi
    echo "acceptance: $pass passed, $fail failed" | tee -a "$out/results.txt"
    if ((fail == 0)); then
        # The VMs' disks (~90 MB each, holding the test cluster's join token)
        # serve only to look into a failure; the reports stay.
        rm -f "$out"/*/overlay.qcow2
    else
        ms_log "VM disks kept for diagnosis: $out/*/overlay.qcow2"
    fi
    ((fail == 0))
}

case "${1:-}" in
build) shift; cmd_build "$@" ;;
boot) shift; cmd_boot "$@" ;;
-h | --help | help) usage ;;
"") usage >&2; exit 2 ;;
*) cmd_run "$@" ;;
esac
