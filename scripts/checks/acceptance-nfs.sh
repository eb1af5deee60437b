#!/usr/bin/env bash
# shellcheck disable=SC2317 # check functions run through ms_check
# Role checks for the NFS server. Usage: acceptance-nfs.sh REPORT
# Environment from scripts/acceptance.sh: MS_MACHINE, MS_HOSTNAME, MS_IP,
# MS_MACHINES_FILE (lines "machine role ip hostname").
# Expects (issue "VM provisioning, and proof by booting"; field facts):
#  - /etc/exports has at least one export, each restricted to a network or
#    host (not "*"), with rw,sync,no_subtree_check;
#  - every exported directory and the directories below it are owned 1001:2000
#    (the chart runs as uid 1001, gid 2000);
#  - exportfs -v lists the exports (the NFS server read them);
#  - ufw is active and allows 2049/tcp.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../lib/report.sh
. "$(dirname "$0")/../lib/report.sh"
r="${1:?usage: acceptance-nfs.sh REPORT}"

exports="$(ms_section "$r" /etc/exports | grep -vE '^[[:space:]]*(#|$)' || true)"
dirs="$(ms_section "$r" "export dirs")"
listed="$(ms_section "$r" "exportfs -v" | grep -E '^/' || true)"

not_world() { ! grep -qE '[[:space:]]\*([(]|[[:space:]]|$)' <<<"$exports"; }
all_rw_sync() {
    local l
    while read -r l; do
        [[ $l == *rw* && $l == *sync* && $l == *no_subtree_check* ]] || return 1
    done <<<"$exports"
}
dirs_exist() { [[ -n "$dirs" ]] && ! grep -q 'No such file' <<<"$dirs"; }
dirs_owned() { awk '$2 != "1001:2000" { bad = 1 } END { exit bad }' <<<"$dirs"; }

ms_check "nfs: /etc/exports has an export" test -n "$exports"
ms_check "nfs: no export open to everyone (*)" not_world
ms_check "nfs: exports are rw,sync,no_subtree_check" all_rw_sync
ms_check "nfs: export dirs exist" dirs_exist
ms_check "nfs: export dirs (and dirs below, 3 levels) owned 1001:2000" dirs_owned
ms_check "nfs: exportfs -v lists the exports" test -n "$listed"
ms_check "nfs: ufw allows 2049/tcp" ms_section_has "$r" "ufw status verbose" '^2049(/tcp)?[[:space:]]+ALLOW'
subnet="${MS_SUBNET:-172.20.0.0/20}"
ms_check "nfs: ufw allows exactly ssh from anywhere and NFS from the subnet" \
    ms_ufw_exactly "$r" "${MS_SSH_PORT:-22}/tcp Anywhere
2049/tcp $subnet"
ms_check "nfs: microseed-status converged" ms_section_has "$r" microseed-status '^microseed: converged '
ms_check "nfs: microseed-status exited 0" ms_section_has "$r" microseed-status '^rc=0$'
exit "$(ms_check_failures)"
