#!/usr/bin/env bash
# shellcheck disable=SC2317 # check functions run through ms_check
# Role checks for the MicroK8s master. Usage: acceptance-master.sh REPORT
# Environment from scripts/acceptance.sh: MS_MACHINE, MS_HOSTNAME, MS_IP,
# MS_MACHINES_FILE (lines "machine role ip hostname").
# Expects (issue "VM provisioning, and proof by booting"; field facts), from
# the fake snap/microk8s call log (/var/log/fake-microk8s.calls):
#  - snap install microk8s --classic --channel=1.20/stable (any 1.x channel);
#  - microk8s status --wait-ready;
#  - the join token registered in cluster-tokens.txt: one line, a token of
#    32+ characters with an expiry (written directly, never as an argument:
#    no add-node call carries it);
#  - the journal shows the add-ons step failing while the stand-in refused
#    the first enables, and microseed-status converged at the end (the
#    snapshot of a failing step is checked on the worker, whose 60 s join
#    stagger makes its timing certain; the master's report, after the
#    power-cut reboot, may start after its add-ons recovered);
#  - with the power-cut boot (MS_POWERCUT, default on), the stand-in's
#    marker that it cut the power at the first add-on enable, so the
#    converged report comes from a boot that resumed half-done steps;
#  - on a 1.27+ channel, the launch configuration /etc/microk8s.yaml (root
#    only) whose persistent token is the seed's join token;
#  - ufw is active and allows 16443 and 25000 (tcp), and ssh on the seed's
#    port (MS_SSH_PORT);
#  - snap refreshes set to the master's slot of the refresh window and held,
#    then the hold lifted once first boot converged.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../lib/report.sh
. "$(dirname "$0")/../lib/report.sh"
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
tokens="$(ms_section "$r" cluster-tokens)"
ms_check "master: one join token line, 32+ characters, with an expiry" \
    grep -qxE '(3[2-9]|[4-9][0-9]) [1-9][0-9]{9,}' <<<"$tokens"
no_token_arg() { ! grep -qE -- '--token [A-Za-z0-9]{32,}' <<<"$calls"; }
ms_check "master: no command got the token as an argument" no_token_arg
ms_check "master: microseed-status converged" ms_section_has "$r" microseed-status '^microseed: converged '
ms_check "master: microseed-status exited 0" ms_section_has "$r" microseed-status '^rc=0$'
ms_check "master: snap refreshes set to its own slot and held (snap-hold)" \
    grep -qE '^snap set system refresh\.timer=[a-z]{3},[0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2} refresh\.hold=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' <<<"$calls"
ms_check "master: the hold lifted once first boot converged (snap-open)" \
    grep -qxE 'snap unset system refresh\.hold' <<<"$calls"
ms_check "master: the add-ons were enabled in the end" ms_section_has "$r" fake-microk8s.calls '^microk8s enable dns'
ms_check "master: journal shows the retry" ms_section_has "$r" "microseed journal" 'microseed-step addons: attempt 1 failed'
if [[ "${MS_POWERCUT:-1}" == 1 ]]; then
    ms_check "master: the power was cut mid first boot (stand-in marker), then it resumed" \
        ms_section_has "$r" "fake-microk8s state" '^powered-off$'
fi
# 1.27+ (a current track, the 24.04 default): the snap reads the launch
# configuration at install, so the persistent token is there before MicroK8s.
track_minor="$(grep -E '^snap install .*microk8s' <<<"$calls" | grep -oE -- '--channel[= ]1\.[0-9]+' | head -n 1 | sed 's/.*1\.//')"
if ((${track_minor:-0} >= 27)); then
    ms_check "master: launch configuration /etc/microk8s.yaml, mode 600 root:root" \
        ms_section_has "$r" "launch configuration" '^600 root:root$'
    ms_check "master: its persistentClusterToken is the seed's join token (32+ characters)" \
        ms_section_has "$r" "launch configuration" '^persistentClusterToken is the join token: yes$'
    ms_check "master: persistentClusterToken has 32+ characters" \
        ms_section_has "$r" "launch configuration" '^persistentClusterToken length: (3[2-9]|[4-9][0-9])$'
fi
ms_check "master: ufw allows 16443/tcp" ms_section_has "$r" "ufw status verbose" '(^|[ ,])16443([ ,/]|$)'
ms_check "master: ufw allows 25000/tcp" ms_section_has "$r" "ufw status verbose" '(^|[ ,])25000([ ,/]|$)'
ms_check "master: ufw allows exactly ssh, MicroK8s from the subnet, beacon p2p from anywhere" \
    ms_ufw_exactly "$r" "$(ms_microk8s_rules "${MS_SUBNET:-172.20.0.0/20}" master "${track_minor:-0}"; echo "25001/tcp ${MS_SUBNET:-172.20.0.0/20}")"
ms_check "master: microseed-fingerprint.socket enabled and listening" \
    ms_section_has "$r" "fingerprint socket" '^is-active: active$'
# What a worker fetches: the agent certificate's fingerprint and whether
# the master belongs to the cluster (a lone master always does), proven with
# the token over the worker's nonce (the fetch checked the HMAC before
# printing them; docs/ha.md, protocol v2).
master_fp="$(ms_section "$r" "agent certificate sha256" | grep -oE '^[0-9a-f]{64}' | head -n 1)"
ms_check "master: the fingerprint socket proves the agent certificate (${master_fp:0:16}...) and that it is clustered" \
    ms_section_has "$r" "fingerprint fetch" "^${master_fp:-none} yes\$"
ms_check "master: the fingerprint fetch exited 0" ms_section_has "$r" "fingerprint fetch" '^rc=0$'
exit "$(ms_check_failures)"
