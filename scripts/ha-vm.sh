#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The HA control plane booted for real (issue 25's VM proof, docs/ha.md
# "Tests"): examples/ha's seeds (NFS server, three masters, a worker) built
# with a key made for the run, every machine booted at once as a VM of the
# acceptance image (Debian stand-in, cloud-init applies the seed) on one
# bridge in a network namespace of its own (the cluster's addresses, no
# route out). The stand-in MicroK8s and its cluster agent run in their
# several-node mode over the network (microseed.test.ha,
# scripts/vm/vm-cluster-agent.py): each node's own token files, joins
# through any member, one membership change at a time, the voter list in
# the join's answer. See usage().
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=recipes/recipe-bookworm-vm.sh
. "$MS_SCRIPTS_DIR/recipes/recipe-bookworm-vm.sh"
# shellcheck source=lib/report.sh
. "$MS_LIB_DIR/report.sh"
# shellcheck source=lib/cluster-phase.sh
. "$MS_LIB_DIR/cluster-phase.sh"

# The whole run, image check and seeds included; the boots alone.
MS_HA_TIMEOUT="${MS_HA_TIMEOUT:-2400}"
MS_CLUSTER_BOOT_TIMEOUT="${MS_CLUSTER_BOOT_TIMEOUT:-1800}"
# The machines booted: the masters and the worker (the NFS server plays no
# part in the control plane, and a fifth emulated VM costs minutes).
MS_HA_MACHINES="${MS_HA_MACHINES:-master-1 master-2 master-3 worker-1}"
MASTERS=(master-1 master-2 master-3)
VOTERS="172.20.10.11:19001 172.20.10.12:19001 172.20.10.13:19001"
NODES="master-1 master-2 master-3 worker-1"

usage() {
    cat <<EOF
usage: ha-vm.sh [--out DIR]

Builds examples/ha's seeds (MICROSEED_BIN, default target/release/microseed)
with a key made for the run, boots MS_HA_MACHINES ("$MS_HA_MACHINES") at
once (qemu's emulation, MS_ACCEL=tcg; MS_MEM MiB and MS_CLUSTER_SMP vCPUs
each, default 1024 and 1), and requires:
every machine's microseed-status converged; \`microseed status --wait\`
exit 0 with each master's datastore at 3 voters; on each master
\`microk8s status\` high-availability with the same 3 voters; exactly one
bootstrap (master-1), masters 2 and 3 joined once each, the add-ons enabled
on one master only, every master's node list holding the 4 nodes Ready, the
worker joined; then, master-1's VM killed, \`microseed status\` exit 4 with
worker-1 still Ready as masters 2 and 3 report it and master-1 and its
voter named lost. Boots bounded by MS_CLUSTER_BOOT_TIMEOUT (${MS_CLUSTER_BOOT_TIMEOUT}s),
the run by MS_HA_TIMEOUT (${MS_HA_TIMEOUT}s). Results, reports and console
logs in DIR (default: a new /tmp/microseed-ha-vm.XXXXXX); on a failure each
VM's console tail is printed. Nothing it starts outlives it.
EOF
}

vm_dir() { printf '%s/bookworm-vm\n' "$(ms_cache_dir)"; }


main() {
    local out="" args=("$@")
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        -h | --help) usage; return 0 ;;
        *) usage >&2; return 2 ;;
        esac
    done
    ms_need_root
    if [[ -z "${MS_HA_BOUNDED:-}" ]]; then
        local rc=0
        ms_timeout "$MS_HA_TIMEOUT" env MS_HA_BOUNDED=1 "$0" "${args[@]}" || rc=$?
        ((rc == 124)) && ms_warn "the HA VM run exceeded ${MS_HA_TIMEOUT}s"
        return "$rc"
    fi
    local t0=$SECONDS bin
    [[ -n "$out" ]] || out="$(mktemp -d /tmp/microseed-ha-vm.XXXXXX)"
    mkdir -p "$out"
    out="$(realpath -e "$out")"
    ms_log "results in $out"
    bin="${MICROSEED_BIN:-$MS_REPO_DIR/target/release/microseed}"
    [[ -x "$bin" ]] || bin="$MS_REPO_DIR/target/debug/microseed"
    [[ -x "$bin" ]] || ms_die "no microseed binary (MICROSEED_BIN, target/release or target/debug)"
    bin="$(realpath -e "$bin")"
    export MICROSEED_BIN="$bin"

    # The image (built or reused by acceptance.sh, which holds the build
    # lock), then held shared for the boots.
    "$MS_SCRIPTS_DIR/acceptance.sh" build
    ms_lock bookworm-vm --shared

    # examples/ha as it is, with a key made for this run among the admin's.
    local c="$out/cluster"
    mkdir -p "$c"
    cp "$MS_REPO_DIR/examples/ha/cluster.yaml" "$c/cluster.yaml"
    install -m 600 "$MS_REPO_DIR/tests/fixtures/secrets.yaml" "$c/secrets.yaml"
    rm -f "$c/admin-key" "$c/admin-key.pub"
    ssh-keygen -q -t ed25519 -N '' -C microseed-ha-vm -f "$c/admin-key"
    sed -i "/^  ssh_keys:\$/a\\    - $(cat "$c/admin-key.pub")" "$c/cluster.yaml"
    grep -qF "$(cut -d' ' -f2 "$c/admin-key.pub")" "$c/cluster.yaml" || ms_die "could not add the run's key to $c/cluster.yaml"
    rm -rf "$c/seeds"
    "$bin" build "$c/cluster.yaml" -o "$c/seeds" --target cloud-image --format dir,seed-img >"$out/build.log" 2>&1 ||
        { cat "$out/build.log" >&2; ms_die "microseed build failed"; }

    # Machine table, as acceptance.sh makes it.
    local d name machines="$out/machines.txt"
    : >"$machines"
    for d in "$c/seeds"/*/; do
        d="${d%/}"
        [[ -f "$d/seed.img" ]] || continue
        name="$(basename "$d")"
        [[ " $MS_HA_MACHINES " == *" $name "* ]] || continue
        "$MS_LIB_DIR/seedinfo.py" "$d" >"$out/$name.env" || ms_die "cannot read the seed files in $d"
        # examples/ha matches its NIC by name (en*), not by MAC: each VM
        # gets one of its own, from its address.
        if grep -qx "SEED_MACS=''" "$out/$name.env"; then
            # shellcheck disable=SC1090
            printf 'SEED_MACS=52:54:00:14:0a:%02x\n' "$(. "$out/$name.env" && a="${SEED_ADDRS%%/*}" && echo "${a##*.}")" >>"$out/$name.env"
        fi
        (
            # shellcheck disable=SC1090
            . "$out/$name.env"
            role=none
            case "$name" in nfs*) role=nfs ;; master*) role=master ;; worker*) role=worker ;; esac
            printf '%s %s %s %s\n' "$name" "$role" "${SEED_ADDRS%%/*}" "$SEED_HOSTNAME"
        ) >>"$machines"
    done
    [[ "$(awk '$2 == "master"' "$machines" | wc -l)" == 3 ]] || ms_die "examples/ha must give 3 masters ($machines)"

    # TCG: this machine's /dev/kvm (nested) opens, but a guest kernel under
    # it prints nothing past its real-mode setup and hangs.
    export MS_ACCEL="${MS_ACCEL:-tcg}" MS_MEM="${MS_MEM:-1024}" MS_CLUSTER_SMP="${MS_CLUSTER_SMP:-1}"
    ms_log "booting $(wc -l <"$machines") VMs at once (accel $MS_ACCEL, ${MS_MEM} MiB each)"
    : >"$out/results.txt"
    # Not in a pipeline: the VMs' and the namespace's pids must stay in this shell.
    MS_POWERCUT=0 MS_CLUSTER_WORDS="microseed.test.ha microseed.test.ubuntu=24.04" \
        cluster_boot "$c/seeds" "$out" "$machines" >"$out/boot.txt"
    echo "$((SECONDS - t0))" >"$out/boot-done-seconds"

    MS_CHECK_FAIL=0 MS_CHECK_PASS=0
    ha_checks "$out" "$machines" "$c" >"$out/checks.txt" 2>"$out/checks.err" ||
        echo "not ok - the HA checks crashed (see $out/checks.err)" >>"$out/checks.txt"
    cluster_vms_down
    tee -a "$out/results.txt" <"$out/checks.txt"
    local pass fail
    pass=$(grep -c '^ok - ' "$out/results.txt" || true)
    fail=$(grep -c '^not ok - ' "$out/results.txt" || true)
    if ((fail > 0)); then
        local role
        while read -r name role _ _ <&3; do
            ms_warn "$name ($role): microseed-status and console tail ($out/$name/console.log)"
            ms_section "$out/$name/report.txt" microseed-status >&2 2>/dev/null || true
            cat "$out/$name/live-status.txt" >&2 2>/dev/null || true
            ms_section "$out/$name/report.txt" "fake cluster agent" | tail -n 15 >&2 || true
            tail -n 40 "$out/$name/console.log" 2>/dev/null | tr -d '\r' >&2 || true
        done 3<"$machines"
        ms_log "VM disks kept for diagnosis: $out/*/overlay.qcow2"
    else
        # The disks (they hold the test cluster's join token) serve only to
        # look into a failure; the reports stay.
        rm -f "$out"/*/overlay.qcow2
    fi
    echo "$((SECONDS - t0))" >"$out/seconds"
    echo "ha-vm: $pass passed, $fail failed in $((SECONDS - t0)) s (boots $(cat "$out/cluster-boot-seconds" 2>/dev/null || echo '?') s, accel $MS_ACCEL)" |
        tee -a "$out/results.txt"
    ((fail == 0))
}

# facts NAME IP: what the checks read on one machine, over ssh with the
# run's key (known_hosts as `microseed status` pinned it).
facts() {
    local name="$1" ip="$2" st="$3/status"
    ms_in_net ssh -F "$st/ssh_config" -o BatchMode=yes -o ConnectTimeout=10 \
        -o UserKnownHostsFile="$st/known_hosts" -o StrictHostKeyChecking=yes \
        -o HostKeyAlias="$name" -p "$PORT" "$ADMIN@$ip" \
        "sudo -n sh -c 'echo \"== status\"; microk8s status; echo \"== bootstrapped\"; ls /var/lib/microseed/bootstrapped 2>/dev/null; echo \"== joins\"; cat /var/lib/fake-microk8s/joins 2>/dev/null; echo \"== addons\"; cat /var/snap/microk8s/current/fake-addons 2>/dev/null; echo \"== worker lock\"; ls /var/snap/microk8s/current/var/lock/clustered.lock 2>/dev/null; echo \"== nodes\"; microk8s kubectl get nodes -o json 2>/dev/null; echo \"== end\"'"
}

# part FILE NAME: the lines of section "== NAME" in a facts dump.
part() { awk -v want="== $2" '$0 == want { on = 1; next } /^== / { on = 0 } on' "$1"; }

# shellcheck disable=SC2317 # called through ms_check
voters_are() { grep -qxF "  datastore master nodes: $VOTERS" <(part "$1" status) && grep -qx 'high-availability: yes' <(part "$1" status); }
# shellcheck disable=SC2317 # called through ms_check
nodes_ready() {
    part "$1" nodes | /usr/bin/python3 -c '
import json, sys
want = set(sys.argv[1].split())
d = json.load(sys.stdin)
ready = {i["metadata"]["name"] for i in d["items"] if i["status"]["conditions"][0]["status"] == "True"}
names = {i["metadata"]["name"] for i in d["items"]}
sys.exit(0 if names == want and ready == want else 1)' "$NODES" 2>/dev/null
}

# ha_checks OUT MACHINES CLUSTERDIR: prints ok/not ok lines.
ha_checks() {
    local out="$1" machines="$2" c="$3" st="$1/status" name role ip rc
    mkdir -p "$st"
    cp "$c/cluster.yaml" "$st/cluster.yaml"
    printf 'Host *\n    IdentityFile %s\n    IdentitiesOnly yes\n' "$c/admin-key" >"$st/ssh_config"
    read -r ADMIN PORT < <(/usr/bin/python3 -c '
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
print(c["admin"]["username"], (c.get("ssh") or {}).get("port", 22))' "$c/cluster.yaml")

    # 1. Each VM's own word: its report, written once microseed-status
    # said converged (or its polls ran out).
    while read -r name role ip _ <&3; do
        local r="$out/$name/report.txt"
        ms_check "$name: booted on the shared network, wrote a complete report" \
            grep -q '^===== END microseed-report =====' "$r"
        ms_check "$name: microseed-status converged (exit 0)" ms_section_has "$r" microseed-status '^rc=0$'
    done 3<"$machines"

    # A VM that did not boot or never converged: nothing below can pass,
    # so say so instead of waiting on it.
    if ((MS_CHECK_FAIL > 0)); then
        echo "not ok - every VM converged on its own: microseed status and the masters' checks skipped"
        # What each VM without a report is doing, for the failure output
        # (its ssh may still be on 22 if its ssh step has not run).
        while read -r name role ip _ <&3; do
            grep -q '^===== END microseed-report =====' "$out/$name/report.txt" && continue
            local p
            for p in "$PORT" 22; do
                # ms_in_net is a function: timeout runs nsenter itself.
                timeout 60 nsenter --net="/proc/$MS_NET_PID/ns/net" -- ssh -F "$st/ssh_config" -o BatchMode=yes -o ConnectTimeout=20 \
                    -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -p "$p" "$ADMIN@$ip" \
                    'sudo -n microseed-status; sudo -n tail -n 8 /var/log/fake-cluster-agent.log' >"$out/$name/live-status.txt" 2>&1 && break
            done
        done 3<"$machines"
        return 0
    fi
    # 2. microseed status from the bridge's side, as an admin runs it.
    local t=$SECONDS
    rc=0
    local only=()
    for name in $MS_HA_MACHINES; do only+=(--machine "$name"); done
    ms_in_net "$MICROSEED_BIN" status "$st/cluster.yaml" --ssh-config "$st/ssh_config" "${only[@]}" --wait=10m --json \
        >"$st/wait.out" 2>"$st/wait.err" || rc=$?
    ms_log "microseed status --wait -> exit $rc in $((SECONDS - t)) s ($st/wait.out)"
    ms_check "status --wait: exits 0 (every machine converged, every node Ready, 3 voters)" test "$rc" = 0
    ms_check "status --wait: ok true, nothing missing" status_json "$st/wait.out" 'd["ok"] and d["missing"] == []'
    while read -r name role ip _ <&3; do
        ms_check "status --wait: $name reachable at $ip, first boot converged" \
            status_json "$st/wait.out" "m['$name']['reachable'] and m['$name']['first_boot']['state'] == 'converged'"
        if [[ "$role" == master ]]; then
            ms_check "status --wait: $name's datastore has 3 voters" \
                status_json "$st/wait.out" "m['$name']['datastore']['state'] == 'ok' and m['$name']['datastore']['detail'].startswith('3 voter')"
        fi
    done 3<"$machines"

    # 3. On each master: one cluster, formed once.
    local boots=() joins addons=0
    for name in "${MASTERS[@]}" worker-1; do
        ip="$(awk -v n="$name" '$1 == n { print $3 }' "$machines")"
        facts "$name" "$ip" "$out" >"$st/$name.facts" 2>&1 || true
        ms_check "$name: answered over ssh" grep -qx '== end' "$st/$name.facts"
    done
    for name in "${MASTERS[@]}"; do
        local f="$st/$name.facts"
        ms_check "$name: microk8s status says high-availability with voters $VOTERS" voters_are "$f"
        ms_check "$name: its node list holds $NODES, every one Ready" nodes_ready "$f"
        [[ -n "$(part "$f" bootstrapped)" ]] && boots+=("$name")
        joins="$(part "$f" joins)"
        if [[ "$name" == master-1 ]]; then
            ms_check "$name: never joined (it bootstrapped)" test -z "$joins"
        else
            ms_check "$name: joined exactly once" test "$joins" = 1
        fi
        [[ -n "$(part "$f" addons)" ]] && addons=$((addons + 1))
    done
    ms_check "exactly one bootstrap, on master-1 (found: ${boots[*]:-none})" test "${boots[*]:-}" = master-1
    ms_check "the add-ons were enabled on exactly one master (found $addons)" test "$addons" = 1
    ms_check "worker-1: joined as a worker (cluster lock)" test -n "$(part "$st/worker-1.facts" "worker lock")"
    # Every join as the agents saw it: masters 2 and 3 through a clustered
    # master, the worker as a worker.
    for name in "${MASTERS[@]}"; do
        ms_section "$out/$name/report.txt" "fake cluster agent" | grep -E ' join from ' | sed "s/^/$name agent: /" >>"$st/joins.log" || true
    done
    ms_check "the agents accepted 2 master joins and 1 worker join in all" \
        test "$(grep -c ': 200 ' "$st/joins.log")" = 3 -a "$(grep -c 'worker join from .*: 200 ' "$st/joins.log")" = 1

    # 4. master-1 killed (its VM, at once, as a power loss would): the
    # worker is still Ready as masters 2 and 3 report it, and status names
    # the loss, master-1's voter included, with exit 4 (docs/ha.md,
    # "Losing a master").
    kill -KILL "${MS_VM_PID[master-1]}" 2>/dev/null || true
    wait "${MS_VM_PID[master-1]}" 2>/dev/null || true
    t=$SECONDS
    rc=0
    ms_in_net "$MICROSEED_BIN" status "$st/cluster.yaml" --ssh-config "$st/ssh_config" "${only[@]}" \
        --connect-timeout 5 --json >"$st/lost.out" 2>"$st/lost.err" || rc=$?
    ms_log "microseed status with master-1 killed -> exit $rc in $((SECONDS - t)) s ($st/lost.out)"
    ms_check "master-1 killed: status exits 4" test "$rc" = 4
    ms_check "master-1 killed: master-1 unreachable, named in what is missing" \
        status_json "$st/lost.out" "not m['master-1']['reachable'] and any(x.startswith('master-1: unreachable') for x in d['missing'])"
    ms_check "master-1 killed: the nodes as master-2 and master-3 report them" \
        status_json "$st/lost.out" "d['cluster']['unreachable'] == ['master-1'] and d['cluster']['nodes']['from'] == ['master-2', 'master-3']"
    ms_check "master-1 killed: worker-1 still Ready" \
        status_json "$st/lost.out" "[n['state'] for n in d['cluster']['nodes']['nodes'] if n['name'] == 'worker-1'] == ['ready']"
    ms_check "master-1 killed: the datastore degraded, master-1's voter named unreachable" \
        status_json "$st/lost.out" "d['cluster']['datastore']['state'] == 'degraded' and [(v['machine'], v['reachable']) for v in d['cluster']['datastore']['voters']] == [('master-1', False), ('master-2', True), ('master-3', True)]"
}

# One line, so nothing after it is read even if the file changes meanwhile.
main "$@"; exit
