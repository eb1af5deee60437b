#!/usr/bin/env bash
# shellcheck disable=SC2317 # check functions run through ms_check
# Role checks for a MicroK8s worker. Usage: acceptance-worker.sh REPORT
# Environment from scripts/acceptance.sh: MS_MACHINE, MS_HOSTNAME, MS_IP,
# MS_MACHINES_FILE (lines "machine role ip hostname").
# Expects (issue "VM provisioning, and proof by booting"; field facts):
#  - microseed-join.service (the join step's unit) exists and is enabled;
#  - the stand-in refuses the first join: microseed-status shows the join
#    failing while it fails, the journal the retry, the end is converged;
#  - the fake call log shows "microk8s join MASTER_IP:25000/TOKEN", TOKEN at
#    least 32 alphanumerics; MASTER_IP is the IP of the machine with role
#    master in SEED_IMG_DIR when there is one, else any IPv4 address;
#  - snap install microk8s happened before the join;
#  - the join verified the certificate of the master it reached: the
#    in-VM stand-in's (serial boots) or, with MS_MASTER_REPORT (the
#    shared-network phase), the master VM's, from that VM's report;
#  - the join says --worker on 1.23+ channels and not before;
#  - ufw is active and allows 10250 (tcp);
#  - the node joined exactly once, though the stand-in (like 1.20) restarts
#    everything at a join and is not ready for tens of seconds after it
#    (issue 23: a join judged by `status` alone was repeated).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../lib/report.sh
. "$(dirname "$0")/../lib/report.sh"
r="${1:?usage: acceptance-worker.sh REPORT}"

master_ip=""
if [[ -n "${MS_MACHINES_FILE:-}" && -r "$MS_MACHINES_FILE" ]]; then
    master_ip="$(awk '$2 == "master" { print $3; exit }' "$MS_MACHINES_FILE")"
fi
ip_re='[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+'
[[ -n "$master_ip" ]] && ip_re="${master_ip//./\\.}"

unit="$(ms_section "$r" microseed-join.service)"
calls="$(ms_section "$r" fake-microk8s.calls)"
ms_check "worker: microseed-join.service enabled" grep -qE '^is-enabled: enabled' <<<"$unit"
ms_check "worker: unit file present" grep -qE '^\[Service\]' <<<"$unit"
ms_check "worker: snap install microk8s" grep -qE '^snap install .*microk8s' <<<"$calls"
ms_check "worker: microk8s join ${master_ip:-<ip>}:25000/<32+ alnum token>[/<fingerprint>]" \
    grep -qE "^microk8s join ${ip_re}:25000/[A-Za-z0-9]{32,}(/[0-9a-f]{64})?( |$)" <<<"$calls"
# The worker fetched the master's proof, checked it and pinned the agent's
# certificate: the fingerprint in the join string is that of the certificate
# the (stand-in) master presents, and on 1.21+ the stand-in microk8s checked
# it against that agent before taking the token.
agent_fp="$(ms_section "$r" "fake master" | sed -n 's/.*agent certificate sha256 \([0-9a-f]\{64\}\).*/\1/p' | head -n 1)"
served_by="the stand-in master"
# The shared-network phase (cluster-phase.sh): the worker joined the real
# master VM, whose report gives its agent certificate's fingerprint.
if [[ -z "$agent_fp" && -n "${MS_MASTER_REPORT:-}" && -r "$MS_MASTER_REPORT" ]]; then
    agent_fp="$(ms_section "$MS_MASTER_REPORT" "agent certificate sha256" | grep -oE '^[0-9a-f]{64}' | head -n 1)"
    served_by="the master VM"
fi
journal_join="$(ms_section "$r" "microseed journal")"
ms_check "worker: $served_by served its certificate" test -n "$agent_fp"
ms_check "worker: the join verified the master's certificate (${agent_fp:0:16}...)" \
    grep -qF "certificate sha256 ${agent_fp:0:16}" <<<"$journal_join"
pinned_or_old() {
    if grep -qE "^microk8s join ${ip_re}:25000/[A-Za-z0-9]{32,}/[0-9a-f]{64}" <<<"$calls"; then
        grep -qE "/${agent_fp}( |$)" <<<"$calls" && ms_section_has "$r" "fake-microk8s verified" "${agent_fp}"
    else
        # 1.20 cannot pin: microseed checked the agent itself (no refusal logged).
        if grep -q "is not the master that proved the token" <<<"$journal_join"; then return 1; fi
    fi
}
ms_check "worker: the join string pins that certificate (1.21+), or microseed checked it (1.20)" pinned_or_old
# 1.23+ (the 24.04 default 1.35 among them): a worker node, never a
# datastore (dqlite) member, so the join says --worker; 1.20-1.22 have no
# such option.
track_minor="$(grep -E '^snap install .*microk8s' <<<"$calls" | grep -oE -- '--channel[= ]1\.[0-9]+' | head -n 1 | sed 's/.*1\.//')"
joins_as_worker() {
    if ((${track_minor:-0} >= 23)); then
        grep -qE '^microk8s join [^ ]+ --worker$' <<<"$calls"
    elif grep -qE '^microk8s join .*--worker' <<<"$calls"; then
        return 1
    fi
}
ms_check "worker: the join says --worker exactly when the channel has it (1.23+; here 1.${track_minor:-?})" joins_as_worker
install_then_join() { awk '/^snap install .*microk8s/ && !s { s = NR } /^microk8s join / { j = NR } END { exit !(s && j && s < j) }' <<<"$calls"; }
ms_check "worker: snap install before join" install_then_join
journal="$(ms_section "$r" "microseed journal")"
ms_check "worker: journal logs the first join attempt failing" grep -qE 'microseed-step join: attempt 1 failed' <<<"$journal"
ms_check "worker: journal logs the join" grep -qE 'microseed-join: joined the cluster at ' <<<"$journal"
ms_check "worker: joined exactly once (the stand-in counts the joins it carried out)" \
    test "$(ms_section "$r" "fake-microk8s joins" | head -n 1)" = 1
ms_check "worker: microseed-status converged" ms_section_has "$r" microseed-status '^microseed: converged '
ms_check "worker: microseed-status exited 0" ms_section_has "$r" microseed-status '^rc=0$'
ms_check "worker: microseed-status showed the join failing while it failed" \
    ms_section_has "$r" "microseed-status while failing" '^join +failed: attempt [0-9]+ exited'
no_token_in_journal() { ! grep -qE '[A-Za-z0-9]{32,}' <<<"$journal"; }
ms_check "worker: the token never appears in the journal" no_token_in_journal
ms_check "worker: ufw allows 10250/tcp" ms_section_has "$r" "ufw status verbose" '(^|[ ,])10250([ ,/]|$)'
ms_check "worker: ufw allows exactly ssh, MicroK8s from the subnet, beacon p2p from anywhere" \
    ms_ufw_exactly "$r" "$(ms_microk8s_rules "${MS_SUBNET:-172.20.0.0/20}" worker "${track_minor:-0}")"
exit "$(ms_check_failures)"
