# shellcheck shell=bash
# The acceptance run's shared-network phase (scripts/acceptance.sh --cluster
# FILE --ssh-key KEY SEED_IMG_DIR), sourced by acceptance.sh:
#
#   1. the master's power-cut boot, alone (slirp), as in the serial run;
#   2. every machine booted at once in ONE network namespace: a bridge
#      holding the cluster's gateway address and one tap per VM, no route
#      out. The master continues from its power-cut disk; the worker joins
#      the real master VM (its microseed-fingerprint socket, and the
#      stand-in cluster agent vm-cluster-agent.py judging the token). The
#      VMs stay up after their report (microseed.test.stay-up);
#   3. the per-VM report checks, as in the serial run (acceptance.sh);
#   4. `microseed status --wait --json` from the bridge's side of that
#      namespace, logging in over ssh with the per-run key, must say every
#      machine converged and every node Ready; then a failing step (the
#      master's add-ons step run again while the stand-in refuses every
#      enable) must give that row and exit 3, and the worker's VM killed
#      must give an unreachable row and exit 4.
#
# The seeds must have been built from FILE with KEY's public key among
# admin.ssh_keys (scripts/test.sh does that with a key made for the run).

MS_CLUSTER_BOOT_TIMEOUT="${MS_CLUSTER_BOOT_TIMEOUT:-1500}"
MS_NET_PID=""
declare -A MS_VM_PID=()

# ms_in_net CMD...: CMD in the shared network namespace.
ms_in_net() { nsenter --net="/proc/$MS_NET_PID/ns/net" -- "$@"; }

# cluster_net_up OUT MACHINES: the namespace (held by a sleeping process),
# its bridge with the gateway address and a tap per machine (ms-tap-N, N
# the machine's line in MACHINES).
cluster_net_up() {
    local out="$1" machines="$2" gw prefix first n
    first="$(awk 'NR == 1 { print $1 }' "$machines")"
    # shellcheck disable=SC1090
    gw="$(. "$out/$first.env" && echo "$SEED_GATEWAY")"
    # shellcheck disable=SC1090
    prefix="$(. "$out/$first.env" && a="${SEED_ADDRS%% *}" && echo "${a#*/}")"
    [[ -n "$gw" && "$prefix" =~ ^[0-9]+$ ]] || ms_die "no gateway or prefix in $out/$first.env"
    # setpriv, unshare and sleep exec each other: $! is the sleeping process,
    # and it dies with this shell even when no EXIT trap runs (ms_tied).
    setpriv --pdeathsig KILL -- unshare --net -- sleep infinity </dev/null >/dev/null 2>&1 &
    MS_NET_PID=$!
    ms_on_exit "kill $MS_NET_PID 2>/dev/null"
    # unshare execs sleep once it is in the new namespace.
    for _ in $(seq 50); do
        [[ "$(readlink "/proc/$MS_NET_PID/ns/net")" != "$(readlink /proc/self/ns/net)" ]] && break
        sleep 0.1
    done
    ms_in_net ip link set lo up
    ms_in_net ip link add ms-br type bridge
    ms_in_net ip addr add "$gw/$prefix" dev ms-br
    ms_in_net ip link set ms-br up
    for n in $(seq "$(wc -l <"$machines")"); do
        ms_in_net ip tuntap add dev "ms-tap-$n" mode tap
        ms_in_net ip link set "ms-tap-$n" master ms-br
        ms_in_net ip link set "ms-tap-$n" up
    done
    ms_log "shared network: bridge ms-br $gw/$prefix, $(wc -l <"$machines") taps (namespace of pid $MS_NET_PID)"
}

# cluster_boot SEEDS OUT MACHINES: the power-cut boot, then every machine at
# once; waits for every report. Prints ok/not ok lines for the boots.
cluster_boot() {
    local seeds="$1" out="$2" machines="$3" vm name role n=0 rc
    vm="$(vm_dir)"
    while read -r name role _ _ <&3; do
        if [[ "$role" == master && "${MS_POWERCUT:-1}" == 1 ]]; then
            local SEED_MACS=""
            # shellcheck disable=SC1090
            . "$out/$name.env"
            rc=0
            MS_EXTRA_APPEND=microseed.test.poweroff-at-enable cmd_boot "$seeds/$name/seed.img" "${SEED_MACS%% *}" "$out/$name" </dev/null || rc=$?
            cp "$out/$name/console.log" "$out/$name/console-powercut.log" 2>/dev/null || true
            # Cut, not timed out: the kernel powered the VM off before any
            # report (the stand-in's own word goes to the journal; its marker
            # on the disk is checked by acceptance-master.sh).
            if ((rc == 0)) || [[ ! -f "$out/$name/overlay.qcow2" ]] ||
                ! grep -q 'reboot: Power down' "$out/$name/console-powercut.log"; then
                echo "not ok - $name: the power was cut mid first boot (the stand-in cuts it at the first add-on enable)"
            else
                echo "ok - $name: the power was cut mid first boot (the stand-in cuts it at the first add-on enable)"
            fi
        fi
    done 3<"$machines"

    cluster_net_up "$out" "$machines"
    # MS_CLUSTER_WORDS: more kernel command line words (scripts/ha-vm.sh).
    local t0=$SECONDS words="microseed.test.stay-up microseed.test.join-agent microseed.test.converge-polls=300${MS_CLUSTER_WORDS:+ $MS_CLUSTER_WORDS}"
    while read -r name role _ _ <&3; do
        n=$((n + 1))
        local SEED_MACS="" work="$out/$name"
        # shellcheck disable=SC1090
        . "$out/$name.env"
        mkdir -p "$work"
        # The master resumes from its power-cut disk; the others start fresh.
        if [[ "$role" != master || "${MS_POWERCUT:-1}" != 1 || ! -f "$work/overlay.qcow2" ]]; then
            rm -f "$work/overlay.qcow2"
            qemu-img create -q -f qcow2 -F raw -b /tmp/ms/vm/root.img -u "$work/overlay.qcow2" 3G
        fi
        : >"$work/console.log"
        : >"$work/report.txt"
        rm -f "$work/boot-seconds"
        ms_log "booting $name on the shared network (tap ms-tap-$n, mac ${SEED_MACS%% *})"
        MS_TAP="ms-tap-$n" MS_SMP="${MS_CLUSTER_SMP:-2}" MS_EXTRA_APPEND="$words" \
            setpriv --pdeathsig KILL -- nsenter --net="/proc/$MS_NET_PID/ns/net" -- \
            unshare --mount --pid --ipc --fork --kill-child -- \
            "$MS_SCRIPTS_DIR/vm/qemu-ns.sh" "$vm" "$work" "$seeds/$name/seed.img" "${SEED_MACS%% *}" \
            </dev/null >"$work/qemu.log" 2>&1 &
        MS_VM_PID[$name]=$!
        ms_on_exit "kill -KILL ${MS_VM_PID[$name]} 2>/dev/null"
    done 3<"$machines"

    local waiting
    while :; do
        waiting=""
        while read -r name _ _ _ <&3; do
            [[ -f "$out/$name/boot-seconds" ]] && continue
            if grep -q '^===== END microseed-report =====' "$out/$name/report.txt"; then
                echo "$((SECONDS - t0))" >"$out/$name/boot-seconds"
                ms_log "$name reported after $((SECONDS - t0)) s"
            elif ! kill -0 "${MS_VM_PID[$name]}" 2>/dev/null; then
                echo "$((SECONDS - t0))" >"$out/$name/boot-seconds"
                ms_warn "$name: qemu exited without a complete report (see $out/$name/qemu.log, console.log)"
            else
                waiting+=" $name"
            fi
        done 3<"$machines"
        [[ -z "$waiting" ]] && break
        if ((SECONDS - t0 > MS_CLUSTER_BOOT_TIMEOUT)); then
            ms_warn "shared-network boots: no report after ${MS_CLUSTER_BOOT_TIMEOUT}s from:$waiting"
            break
        fi
        sleep 5
    done
    echo "$((SECONDS - t0))" >"$out/cluster-boot-seconds"
    ms_log "shared-network boots done in $((SECONDS - t0)) s"
}

# status_json FILE EXPR: EXPR (Python) is true of `microseed status --json`
# in FILE; d is the document, m the machines by name.
status_json() {
    /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
m = {x["name"]: x for x in d["machines"]}
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null
}

# cluster_status_checks OUT MACHINES CLUSTER KEY: prints ok/not ok lines.
cluster_status_checks() {
    local out="$1" machines="$2" cluster="$3" key="$4" st="$1/status" bin rc
    local master="" worker="" nfs="" name role ip expected=0 admin port
    bin="${MICROSEED_BIN:-$MS_REPO_DIR/target/release/microseed}"
    [[ -x "$bin" ]] || bin="$MS_REPO_DIR/target/debug/microseed"
    mkdir -p "$st"
    # known_hosts lands beside this copy: trust on first use, then pinned.
    cp "$cluster" "$st/cluster.yaml"
    printf 'Host *\n    IdentityFile %s\n    IdentitiesOnly yes\n' "$key" >"$st/ssh_config"
    while read -r name role _ _ <&3; do
        case "$role" in
        master) master="$name" expected=$((expected + 1)) ;;
        worker) worker="$name" expected=$((expected + 1)) ;;
        nfs) nfs="$name" ;;
        esac
    done 3<"$machines"
    read -r admin port < <(/usr/bin/python3 -c '
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
print(c["admin"]["username"], (c.get("ssh") or {}).get("port", 22))' "$cluster")
    run_status() { # TAG ARGS...: microseed status in the namespace, output in $st/TAG.*
        local tag="$1" t=$SECONDS
        shift
        rc=0
        ms_in_net "$bin" status "$st/cluster.yaml" --ssh-config "$st/ssh_config" "$@" \
            >"$st/$tag.out" 2>"$st/$tag.err" || rc=$?
        echo "rc=$rc seconds=$((SECONDS - t))" >"$st/$tag.rc"
        ms_log "microseed status $* -> exit $rc in $((SECONDS - t)) s ($st/$tag.out)"
    }

    # 1. Every machine converged, every node Ready.
    run_status wait --wait=10m --json
    ms_check "status --wait: exits 0 (every machine converged, every node Ready)" test "$rc" = 0
    ms_check "status --wait: ok true, exit_code 0, nothing missing" \
        status_json "$st/wait.out" 'd["ok"] and d["exit_code"] == 0 and d["missing"] == []'
    while read -r name role ip _ <&3; do
        ms_check "status --wait: $name reachable at $ip, first boot converged" \
            status_json "$st/wait.out" "m['$name']['reachable'] and m['$name']['first_boot']['state'] == 'converged' and m['$name']['first_boot']['done'] == m['$name']['first_boot']['total'] > 0"
        ms_check "status --wait: $name ufw active" status_json "$st/wait.out" "m['$name']['ufw']['state'] == 'active'"
        # No NTP server is reachable from the namespace: chronyd runs, unsynchronized.
        ms_check "status --wait: $name chrony running, not synchronized (no NTP server in the namespace)" \
            status_json "$st/wait.out" "m['$name']['chrony']['state'] == 'not-synchronized'"
        # The Debian 12 stand-in, not Ubuntu: VERSION_ID 12 against the cluster's release.
        ms_check "status --wait: $name release 12 (Debian stand-in), cluster's release expected" \
            status_json "$st/wait.out" "m['$name']['release'] == '12' and m['$name']['release_expected'] not in (None, '12')"
    done 3<"$machines"
    if [[ -n "$master" ]]; then
        ms_check "status --wait: $master sees $expected/$expected nodes Ready" \
            status_json "$st/wait.out" "m['$master']['nodes']['state'] == 'ok' and m['$master']['nodes']['ready'] == m['$master']['nodes']['expected'] == $expected"
    fi
    if [[ -n "$nfs" ]]; then
        ms_check "status --wait: $nfs exports the export root (exported, directory present)" \
            status_json "$st/wait.out" "m['$nfs']['nfs_export']['state'] == 'ok' and m['$nfs']['nfs_export']['exported'] and m['$nfs']['nfs_export']['directory']"
    fi
    ms_check "status --wait: known_hosts beside the cluster file holds every machine's key" \
        test "$(awk '{ print $1 }' "$st/known_hosts" 2>/dev/null | sort -u | wc -l)" = "$(wc -l <"$machines")"

    # 2. A failing step: the master's add-ons step run again (its done
    # marker removed, its unit started, as microseed-step runs it at boot)
    # while the stand-in microk8s refuses every enable.
    if [[ -n "$master" ]]; then
        local mip
        mip="$(awk -v n="$master" '$1 == n { print $3 }' "$machines")"
        ssh_master() {
            ms_in_net ssh -F "$st/ssh_config" -o BatchMode=yes -o ConnectTimeout=10 \
                -o UserKnownHostsFile="$st/known_hosts" -o StrictHostKeyChecking=yes \
                -o HostKeyAlias="$master" -p "$port" "$admin@$mip" "$@"
        }
        ssh_master "sudo -n sh -c 'echo 1000 >/var/lib/fake-microk8s/enable-failures && rm -f /var/lib/microseed/done/addons && systemctl start --no-block microseed-addons.service'" \
            >"$st/fail-step.log" 2>&1 || ms_warn "could not make the add-ons step fail (see $st/fail-step.log)"
        for _ in $(seq 40); do
            ssh_master sudo -n microseed-status >"$st/fail-step.status" 2>&1 || true
            grep -qE '^addons +failed' "$st/fail-step.status" && break
            sleep 3
        done
        run_status failing --json
        ms_check "failing step: status exits 3 (every machine answered, one not converged)" test "$rc" = 3
        ms_check "failing step: $master row says failed at addons" \
            status_json "$st/failing.out" "m['$master']['first_boot']['state'] == 'failed' and m['$master']['first_boot']['summary'].startswith('failed at addons')"
        ms_check "failing step: the others still converged, nothing unreachable" \
            status_json "$st/failing.out" "all(x['reachable'] for x in d['machines']) and all(x['first_boot']['state'] == 'converged' for x in d['machines'] if x['name'] != '$master')"
    fi

    # 3. A stopped machine: the worker's VM killed.
    if [[ -n "$worker" ]]; then
        # SIGKILL: unshare --fork blocks TERM while it waits; --kill-child
        # then kills qemu, as pulling the plug would.
        kill -KILL "${MS_VM_PID[$worker]}" 2>/dev/null || true
        wait "${MS_VM_PID[$worker]}" 2>/dev/null || true
        sleep 2
        run_status stopped --json
        ms_check "stopped machine: status exits 4 (a machine could not be asked; wins over 3)" test "$rc" = 4
        ms_check "stopped machine: $worker row unreachable, with ssh's reason" \
            status_json "$st/stopped.out" "not m['$worker']['reachable'] and m['$worker']['error'] and m['$worker']['first_boot']['state'] == 'unknown'"
        ms_check "stopped machine: every other machine still answered" \
            status_json "$st/stopped.out" "all(x['reachable'] for x in d['machines'] if x['name'] != '$worker')"
        # The table a user reads.
        run_status table
        ms_check "stopped machine: the table exits 4" test "$rc" = 4
        ms_check "stopped machine: the table's $worker row says unreachable" \
            grep -qE "^${worker}[[:space:]].*unreachable" "$st/table.out"
        if [[ -n "$master" ]]; then
            ms_check "failing step: the table's $master row says failed at addons" \
                grep -qE "^${master}[[:space:]].*failed at addons" "$st/table.out"
        fi
    fi
}

# cluster_vms_down: stop every VM and the namespace.
cluster_vms_down() {
    local name
    for name in "${!MS_VM_PID[@]}"; do
        kill -KILL "${MS_VM_PID[$name]}" 2>/dev/null || true
    done
    for name in "${!MS_VM_PID[@]}"; do
        wait "${MS_VM_PID[$name]}" 2>/dev/null || true
    done
    [[ -n "$MS_NET_PID" ]] && kill "$MS_NET_PID" 2>/dev/null
    return 0
}
