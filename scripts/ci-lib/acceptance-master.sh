#!/usr/bin/env bash
# shellcheck disable=SC2317 # check functions run through ms_check
# Role checks for the MicroK8s master. Usage: acceptance-master.sh REPORT
# Environment from scripts/acceptance.sh: MS_MACHINE, MS_HOSTNAME, MS_IP,
# MS_MACHINES_FILE (lines "machine role ip hostname").
# Expects (issue "VM provisioning, and proof by booting"; field facts), from
# the fake snap/microk8s call log (/var/log/fake-microk8s.calls):
#  - snap install microk8s --classic --channel=1.20/stable (any 1.x channel);
#  - microk8s status --wait-ready;
#  - microk8s add-node --token T --token-ttl N with T >= 32 characters,
#    alphanumeric only (no / or |), N a positive number;
#  - ufw is active and allows 16443 and 25000 (tcp).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=report.sh
. "$(dirname "$0")/report.sh"
r="${1:?usage: acceptance-master.sh REPORT}"

calls="$(ms_section "$r" fake-microk8s.calls)"
ms_check "master: snap install microk8s --classic with a channel" \
    grep -qE '^snap install .*microk8s' <<<"$calls"
classic_channel() {
    local l
    l="$(grep -E '^snap install .*microk8s' <<<"$calls" || true)"
    [[ "$l" == *--classic* ]] && grep -qE -- '--channel[= ]1\.[0-9]+' <<<"$l"
}
ms_check "master: --classic and --channel=1.x given" classic_channel
ms_check "master: microk8s status --wait-ready" grep -qE '^microk8s status .*--wait-ready' <<<"$calls"
ms_check "master: microk8s add-node --token <32+ alnum> --token-ttl <N>" \
    grep -qE '^microk8s add-node( .*)? --token [A-Za-z0-9]{32,}( .*)? --token-ttl [1-9][0-9]*|^microk8s add-node( .*)? --token-ttl [1-9][0-9]*( .*)? --token [A-Za-z0-9]{32,}' <<<"$calls"
ms_check "master: ufw allows 16443/tcp" ms_section_has "$r" "ufw status verbose" '(^|[ ,])16443([ ,/]|$)'
ms_check "master: ufw allows 25000/tcp" ms_section_has "$r" "ufw status verbose" '(^|[ ,])25000([ ,/]|$)'
ms_check "master: ufw allows exactly ssh, MicroK8s from the subnet, beacon p2p from anywhere" \
    ms_ufw_exactly "$r" "$(ms_microk8s_rules "${MS_SUBNET:-172.20.0.0/20}")"
exit "$(ms_check_failures)"
