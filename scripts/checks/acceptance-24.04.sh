#!/usr/bin/env bash
# shellcheck disable=SC2317 # check functions run through ms_check
# Release checks for Ubuntu 24.04 seeds, every role. Usage:
# acceptance-24.04.sh REPORT. Run by scripts/acceptance.sh with
# MS_RELEASE=24.04, after the role's hook; the boot had
# microseed.test.ubuntu=24.04, so the image ran OpenSSH as noble does
# (ssh.socket enabled, ssh.service disabled, the socket's ports read from
# sshd's config at daemon-reload: scripts/vm/vm-noble-ssh.sh).
# Environment: MS_MACHINE, MS_SSH_PORT (the port the seed moves ssh to).
# Expects (issue 15: OpenSSH's socket activation on 24.04; a wrong move
# locks the user out):
#  - the stand-in's switch happened (else nothing below means anything);
#  - ssh.socket enabled and active, listening on MS_SSH_PORT only, IPv4 and
#    IPv6, held by systemd (pid 1), and nothing listening on 22 any more;
#    ssh.service neither enabled nor running;
#  - microseed's sshd drop-in says Port MS_SSH_PORT and the generator put
#    it on the socket;
#  - ufw allows MS_SSH_PORT/tcp, and the firewall step was done before the
#    ssh step first ran and before ssh.socket last started listening;
#  - the ssh step is done;
#  - on the machine booted with microseed.test.ssh-move-fails-once (the
#    first move leaves ssh.socket on 22; scripts/acceptance.sh picks it by
#    role), the ssh step rolled back, and right after the rollback ufw
#    allowed 22/tcp and ssh.socket listened on 22 without microseed's
#    drop-in: reachable where sshd listened (issue 23). The retry then
#    moved it, and 22 is closed at the end.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../lib/report.sh
. "$(dirname "$0")/../lib/report.sh"
r="${1:?usage: acceptance-24.04.sh REPORT}"
m="${MS_MACHINE:-machine}"
port="${MS_SSH_PORT:-22}"

units="$(ms_section "$r" "ssh units")"
journal="$(ms_section "$r" "ssh journal")"
ms_check "$m (24.04): the stand-in switched OpenSSH to ssh.socket at boot" \
    grep -q 'microseed-test-noble-ssh: ssh.socket enabled, ssh.service disabled' <<<"$journal"
ms_check "$m (24.04): ssh.socket enabled" grep -qx 'ssh.socket is-enabled: enabled' <<<"$units"
ms_check "$m (24.04): ssh.socket active" grep -qx 'ssh.socket is-active: active' <<<"$units"
ms_check "$m (24.04): ssh.service disabled" grep -qx 'ssh.service is-enabled: disabled' <<<"$units"
ms_check "$m (24.04): ssh.service not running" grep -qxE 'ssh.service is-active: (inactive|dead)' <<<"$units"

# systemctl show -p Listen: one "Listen=ADDR:PORT (Stream)" line per address.
listen_only_port() {
    local l n=0
    while read -r l; do
        [[ "$l" == Listen=* ]] || continue
        n=$((n + 1))
        [[ "$l" =~ ^Listen=(0\.0\.0\.0|\[::\]):${port}\ \(Stream\)$ ]] || return 1
    done <<<"$units"
    grep -qxF "Listen=0.0.0.0:$port (Stream)" <<<"$units" && grep -qxF "Listen=[::]:$port (Stream)" <<<"$units" && ((n == 2))
}
ms_check "$m (24.04): ssh.socket listens on $port only (0.0.0.0 and [::])" listen_only_port

listeners="$(ms_section "$r" "tcp listeners")"
held_by_systemd() {
    grep -E "[[:space:]](0\.0\.0\.0|\[::\]):${port}[[:space:]]" <<<"$listeners" | grep -q 'users:(("systemd",pid=1,'
}
ms_check "$m (24.04): port $port is held by systemd (the socket), not by an sshd" held_by_systemd
no_sshd_listener() { ! grep -q '"sshd"' <<<"$listeners"; }
ms_check "$m (24.04): no sshd process listens itself" no_sshd_listener
if [[ "$port" != 22 ]]; then
    nothing_on_22() { ! grep -qE "[[:space:]](0\.0\.0\.0|\[::\]|\*):22[[:space:]]" <<<"$listeners"; }
    ms_check "$m (24.04): nothing listens on 22 any more" nothing_on_22
fi

ms_check "$m (24.04): microseed's sshd drop-in says Port $port" \
    ms_section_has "$r" sshd_config.d "^Port ${port}\$"
ms_check "$m (24.04): the generator gave ssh.socket sshd's port" \
    ms_section_has "$r" "ssh.socket drop-ins" "^ListenStream=0\\.0\\.0\\.0:${port}\$"
ms_check "$m (24.04): ufw allows $port/tcp from anywhere" \
    grep -qxF "$port/tcp Anywhere" <<<"$(ms_ufw_allowed "$r")"

# short-monotonic journal lines: "[  12.345678] host ident[pid]: message".
mono() { grep -E -- "$1" <<<"$journal" | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p'; }
firewall_first() {
    local fw ssh1 listen
    fw="$(mono 'microseed-step firewall: done on attempt' | head -n 1)"
    ssh1="$(mono 'microseed-step ssh: attempt 1$' | head -n 1)"
    listen="$(mono 'Listening on .*(ssh\.socket|OpenBSD Secure Shell server socket)' | tail -n 1)"
    [[ -n "$fw" && -n "$ssh1" && -n "$listen" ]] || return 1
    awk -v fw="$fw" -v s="$ssh1" -v l="$listen" 'BEGIN { exit !(fw < s && fw < l) }'
}
ms_check "$m (24.04): the firewall step was done before the ssh step ran and the socket moved" firewall_first
ms_check "$m (24.04): the ssh step is done" ms_section_has "$r" microseed-status '^ssh +done$'
if [[ "${MS_ROLE:-}" == "${MS_SSH_MOVE_FAILS_ROLE:-master}" && "$port" != 22 ]]; then
    rb="$(ms_section "$r" "ssh rollback")"
    ms_check "$m (24.04): the first ssh move failed and was rolled back" \
        grep -qF "ssh.socket is not listening on $port; keeping the previous settings" <<<"$journal"
    ms_check "$m (24.04): snapshot taken when the ssh step failed" grep -q '^ssh step error: attempt 1 exited' <<<"$rb"
    ms_check "$m (24.04): after the rollback, ufw allowed 22/tcp" grep -qE '^22/tcp +ALLOW IN +Anywhere( |$)' <<<"$rb"
    ms_check "$m (24.04): after the rollback, ssh.socket listened on 22" grep -qxF 'Listen=0.0.0.0:22 (Stream)' <<<"$rb"
    no_dropin_after_rollback() { ! sed -n '/^--- sshd_config.d$/,$p' <<<"$rb" | grep -q '10-microseed.conf'; }
    ms_check "$m (24.04): after the rollback, microseed's sshd drop-in was gone" no_dropin_after_rollback
    ms_check "$m (24.04): the retry moved ssh (attempt 2 done)" grep -q 'microseed-step ssh: done on attempt 2' <<<"$journal"
fi
closed_22() { ! grep -q '^22/tcp ' <<<"$(ms_ufw_allowed "$r")"; }
[[ "$port" == 22 ]] || ms_check "$m (24.04): 22/tcp closed once ssh moved to $port" closed_22
exit "$(ms_check_failures)"
