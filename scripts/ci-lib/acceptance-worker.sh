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
#  - ufw is active and allows 10250 (tcp).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=report.sh
. "$(dirname "$0")/report.sh"
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
ms_check "worker: microk8s join ${master_ip:-<ip>}:25000/<32+ alnum token>" \
    grep -qE "^microk8s join ${ip_re}:25000/[A-Za-z0-9]{32,}( |$)" <<<"$calls"
install_then_join() { awk '/^snap install .*microk8s/ && !s { s = NR } /^microk8s join / { j = NR } END { exit !(s && j && s < j) }' <<<"$calls"; }
ms_check "worker: snap install before join" install_then_join
journal="$(ms_section "$r" "microseed journal")"
ms_check "worker: journal logs the first join attempt failing" grep -qE 'microseed-step join: attempt 1 failed' <<<"$journal"
ms_check "worker: journal logs the join" grep -qE 'microseed-join: joined the cluster at ' <<<"$journal"
ms_check "worker: microseed-status converged" ms_section_has "$r" microseed-status '^microseed: converged '
ms_check "worker: microseed-status exited 0" ms_section_has "$r" microseed-status '^rc=0$'
ms_check "worker: microseed-status showed the join failing while it failed" \
    ms_section_has "$r" "microseed-status while failing" '^join +failed: attempt [0-9]+ exited'
no_token_in_journal() { ! grep -qE '[A-Za-z0-9]{32,}' <<<"$journal"; }
ms_check "worker: the token never appears in the journal" no_token_in_journal
ms_check "worker: ufw allows 10250/tcp" ms_section_has "$r" "ufw status verbose" '(^|[ ,])10250([ ,/]|$)'
ms_check "worker: ufw allows exactly ssh, MicroK8s from the subnet, beacon p2p from anywhere" \
    ms_ufw_exactly "$r" "$(ms_microk8s_rules "${MS_SUBNET:-172.20.0.0/20}")"
exit "$(ms_check_failures)"
