#!/bin/sh
# microseed status: everything one machine can tell about itself, in one
# ssh round trip. `microseed status` sends this script on stdin and runs
#   sh -s -- ROLE EXPORT_ROOT
# on the machine (both arguments single-quoted by microseed). Each check is
# a section between marker lines ending with the check's exit code, so a
# missing tool or a failing check is a value in its row, never the end of
# the report. The script is the same for every machine; nothing from the
# cluster file is ever part of its text.
role=${1:-}
export_root=${2:-}

# A non-login ssh session's PATH may lack the sbin directories and snap's.
PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin
LC_ALL=C
export PATH LC_ALL

# A hung tool (a wedged API server) must not hold up the whole report.
run() {
    if command -v timeout >/dev/null 2>&1; then
        timeout 20 "$@"
    else
        "$@"
    fi
}

# microseed-status, ufw and exportfs read root-only state. Key-only admins
# have passwordless sudo; -n turns a password prompt into an error message.
run_root() {
    if [ "$(id -u)" = 0 ]; then
        run "$@"
    elif command -v timeout >/dev/null 2>&1; then
        sudo -n -- timeout 20 "$@"
    else
        sudo -n -- "$@"
    fi
}

# section NAME TOOL COMMAND [ARG...]: TOOL missing gives exit code 127 and
# the words "not installed".
section() {
    name=$1
    tool=$2
    shift 2
    echo "@@microseed-probe begin $name"
    if [ -n "$tool" ] && ! command -v "$tool" >/dev/null 2>&1; then
        echo "$tool: not installed"
        rc=127
    else
        "$@" </dev/null 2>&1
        rc=$?
    fi
    # The newline ends output that lacks one, so the marker starts a line.
    printf '\n@@microseed-probe end %s %s\n' "$name" "$rc"
}

export_dir() {
    if [ -z "$export_root" ]; then
        echo "no export root given"
        return 2
    fi
    if [ -d "$export_root" ]; then echo "directory: yes"; else echo "directory: no"; fi
    if command -v mountpoint >/dev/null 2>&1 && mountpoint -q "$export_root"; then
        echo "mounted: yes"
    else
        echo "mounted: no"
    fi
}

echo "@@microseed-probe 1"
section os-release "" cat /etc/os-release
section status microseed-status run_root microseed-status
section chrony chronyc run chronyc -n tracking
section ufw ufw run_root ufw status
# When snapd will refresh (MicroK8s among the snaps): the timer, a hold,
# the next refresh, as absolute times.
section refresh snap run snap refresh --time --abs-time
case "$role" in
nfs)
    section exports exportfs run_root exportfs -v
    section export-dir "" export_dir
    ;;
master)
    section nodes microk8s run_root microk8s kubectl get nodes -o json
    # The datastore's voters and stand-bys (dqlite), as MicroK8s lists them.
    section datastore microk8s run_root microk8s status
    ;;
esac
echo "@@microseed-probe done"
