# shellcheck shell=bash
# Helpers for reading a VM report (written by vm-report.sh) and counting
# checks. Sourced by scripts/acceptance.sh and the role hooks
# scripts/checks/acceptance-<role>.sh.
#
#   ms_section REPORT NAME     print the body of section "===== NAME ====="
#   ms_check DESC CMD...       run CMD; print "ok - DESC" or "not ok - DESC"
#   ms_section_has REPORT NAME ERE      section contains a line matching ERE
#   ms_check_failures          number of failed checks so far

MS_CHECK_FAIL=0
MS_CHECK_PASS=0

ms_section() {
    # One process reading the file: no pipe that an early exit could break
    # (SIGPIPE + pipefail made callers fail at random).
    awk -v want="===== $2 =====" '
        { sub(/\r$/, "") }
        $0 == want { on = 1; next }
        /^===== .* =====$/ { if (on) exit }
        on { print }
    ' "$1"
}

ms_section_has() {
    local body
    body="$(ms_section "$1" "$2")"
    # Not "ms_section | grep -q": grep -q exits early, SIGPIPE + pipefail.
    grep -qE -- "$3" <<<"$body"
}

ms_check() {
    local desc="$1"
    shift
    if "$@"; then
        MS_CHECK_PASS=$((MS_CHECK_PASS + 1))
        printf 'ok - %s\n' "$desc"
    else
        MS_CHECK_FAIL=$((MS_CHECK_FAIL + 1))
        printf 'not ok - %s\n' "$desc"
    fi
}

ms_check_failures() { echo "$MS_CHECK_FAIL"; }

# ms_ufw_allowed REPORT: the "PORT/PROTO FROM" pairs ufw allows in (IPv4
# rules, sorted, one per line), e.g. "2049/tcp 172.20.0.0/20".
ms_ufw_allowed() {
    ms_section "$1" "ufw status verbose" |
        awk '/ALLOW IN/ && $1 ~ /^[0-9]+(:[0-9]+)?\/(tcp|udp)$/ {
            for (i = 2; i < NF; i++) if ($i == "IN") { print $1, $(i + 1); break }
        }' | sort -u
}

# ms_ufw_exactly REPORT EXPECTED: true when the allowed pairs are exactly
# EXPECTED (newline-separated "PORT/PROTO FROM"; order does not matter).
ms_ufw_exactly() {
    local got want
    got="$(ms_ufw_allowed "$1")"
    want="$(sort -u <<<"$2")"
    if [[ "$got" != "$want" ]]; then
        printf 'ufw rules differ:\n--- expected\n%s\n--- got\n%s\n' "$want" "$got" >&2
        return 1
    fi
}

# ms_microk8s_rules SUBNET [ROLE MINOR]: the allow rules a lone MicroK8s
# master or a worker must have (ms_ufw_allowed form): ssh (on the seed's
# port, MS_SSH_PORT) and the beacon's p2p ports from anywhere, MicroK8s
# ports (Calico VXLAN included) from the cluster subnet only. From 1.23
# (MINOR, the channel's) workers join with --worker: the API server (16443),
# the cluster agent (25000) and dqlite (19001) are the masters' alone, and
# dqlite only between masters, so a lone master has no 19001 rule at all.
ms_microk8s_rules() {
    local p role=${2:-} minor=${3:-0}
    echo "${MS_SSH_PORT:-22}/tcp Anywhere"
    for p in 16443/tcp 10250/tcp 10255/tcp 25000/tcp 12379/tcp 10257/tcp 10259/tcp 19001/tcp 4789/udp; do
        if ((minor >= 23)); then
            case $role:$p in
            master:19001/tcp | worker:16443/tcp | worker:25000/tcp | worker:19001/tcp) continue ;;
            esac
        fi
        echo "$p $1"
    done
    printf '%s\n' "12000/udp Anywhere" "13000/tcp Anywhere"
}
