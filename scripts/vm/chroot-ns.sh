#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs as PID 1 of fresh namespaces (started by scripts/cloud-init-chroot.sh
# under "unshare --mount --uts --net --ipc --pid --fork --kill-child").
# Everything mounted here vanishes with the namespace.
#
#   chroot-ns.sh schema BASE KIND FILE
#   chroot-ns.sh apply BASE OUTDIR SEED_KIND SEED LOOPDEV MAC...
#       SEED_KIND dir: SEED is a directory copied to /var/lib/cloud/seed/nocloud
#       SEED_KIND dev: LOOPDEV (/dev/loopN, read-only) holds the CIDATA filesystem
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../recipes/recipe-bookworm-vm.sh
. "$MS_SCRIPTS_DIR/recipes/recipe-bookworm-vm.sh"

STAGE_TIMEOUT="${MS_STAGE_TIMEOUT:-180}"
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin

mount --make-rprivate /

# overlay BASE UPPER WORK MERGED
overlay() {
    mkdir -p "$2" "$3" "$4"
    mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
}

# A minimal /dev: only our loop device, so cloud-init cannot pick up another
# CIDATA device of this machine (other tests may have seeds attached).
mkdev() {
    local d="$1/dev" loop="${2:-}" n
    mount -t tmpfs -o mode=755,nosuid devtmp "$d"
    for n in null zero full random urandom tty fuse; do
        [[ -e "/dev/$n" ]] || continue
        touch "$d/$n"
        mount --bind "/dev/$n" "$d/$n"
    done
    mkdir -p "$d/pts" "$d/shm"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$d/pts"
    ln -s pts/ptmx "$d/ptmx"
    mount -t tmpfs -o mode=1777 shm "$d/shm"
    ln -s /proc/self/fd "$d/fd"
    ln -s /proc/self/fd/0 "$d/stdin"
    ln -s /proc/self/fd/1 "$d/stdout"
    ln -s /proc/self/fd/2 "$d/stderr"
    if [[ -n "$loop" ]]; then
        touch "$d/${loop#/dev/}"
        mount --bind "$loop" "$d/${loop#/dev/}"
    fi
}

setup_root() {
    local m="$1" loop="${2:-}"
    mount -t proc proc "$m/proc"
    mount -t sysfs sysfs "$m/sys"
    mkdev "$m" "$loop"
    mount -t tmpfs -o mode=755 run "$m/run"
    mount -t tmpfs -o mode=1777 tmp "$m/tmp"
}

in_root() {
    local m="$1"
    shift
    chroot "$m" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb \
        SYSTEMD_OFFLINE=1 "$@"
}

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

do_schema() {
    local base="$1" kind="$2" file="$3" t=/run/ms-schema
    mkdir -p "$t"
    mount -t tmpfs tmp "$t"
    overlay "$base" "$t/upper" "$t/work" "$t/root"
    setup_root "$t/root"
    local name
    name="$(basename "$file")"
    cp "$file" "$t/root/tmp/$name"
    case "$kind" in
    cloud-config) in_root "$t/root" cloud-init schema -c "/tmp/$name" --annotate ;;
    network-config) in_root "$t/root" cloud-init schema -t network-config -c "/tmp/$name" --annotate ;;
    *) ms_die "unknown schema kind $kind" ;;
    esac
}

# fake_master IP ROOT OUTDIR: in this namespace, the master at IP as a
# worker sees it: the root's own copy of the master's fingerprint script
# behind systemd-socket-activate (as the master's socket unit runs it), with
# the root's token (the cluster's) and a fresh agent certificate, which a TLS
# server presents on 25000. Dies with the namespace.
fake_master() {
    local ip="$1" m="$2" out="$3" d="$3/fake-master" port
    mkdir -p "$d/certs"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=fake-master -keyout "$d/certs/server.key" -out "$d/certs/server.crt" 2>/dev/null
    openssl x509 -outform der -in "$d/certs/server.crt" | sha256sum | cut -d' ' -f1 >"$out/fake-master.sha256"
    ip addr add "$ip/32" dev lo
    systemd-socket-activate -l "$ip:25001" --accept --inetd -E "MICROSEED_SNAP_DATA=$d" \
        -E "MICROSEED_JOIN_TOKEN_FILE=$m/etc/microseed/join-token" \
        python3 "$m/usr/local/lib/microseed/microseed-fingerprint" serve >/dev/null 2>>"$out/fake-master.log" &
    openssl s_server -quiet -accept "$ip:25000" -cert "$d/certs/server.crt" -key "$d/certs/server.key" \
        </dev/null >/dev/null 2>&1 &
    for port in 25001 25000; do
        for _ in $(seq 100); do
            (echo >"/dev/tcp/$ip/$port") 2>/dev/null && break
            sleep 0.05
        done
    done
}

# boot_steps ROOT OUTDIR: what systemd would do at boot, without systemd:
# every enabled microseed step unit's ExecStart, in the order of
# /etc/microseed/steps (dependencies come first), one attempt each, not
# waiting for a dependency that is not done. Then microseed-status.
boot_steps() {
    local m="$1" out="$2" name unit cmd
    : >"$out/steps.log"
    [[ -f "$m/etc/microseed/steps" ]] || return 0
    if [[ -n "${MS_FAKE_MASTER:-}" ]]; then
        fake_master "$MS_FAKE_MASTER" "$m" "$out"
    fi
    while IFS='|' read -r name _; do
        case "$name" in '' | '#'*) continue ;; esac
        unit="$m/etc/systemd/system/multi-user.target.wants/microseed-$name.service"
        # The enablement link is absolute, valid inside the root only.
        if [[ ! -L "$unit" && ! -e "$unit" ]]; then
            echo "=== $name: unit not enabled" >>"$out/steps.log"
            continue
        fi
        cmd="$(sed -n 's/^ExecStart=//p' "$m/etc/systemd/system/microseed-$name.service")"
        echo "=== $name: $cmd" >>"$out/steps.log"
        # shellcheck disable=SC2086 # ExecStart= is split like systemd would
        ms_timeout "$STAGE_TIMEOUT" chroot "$m" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root \
            LANG=C.UTF-8 TERM=dumb SYSTEMD_OFFLINE=1 MICROSEED_STEP_ATTEMPTS=1 MICROSEED_STEP_NO_WAIT=1 \
            $cmd >>"$out/steps.log" 2>&1 </dev/null || echo "=== $name: rc=$?" >>"$out/steps.log"
    done <"$m/etc/microseed/steps"
    rc=0
    in_root "$m" /usr/local/sbin/microseed-status >"$out/microseed-status.txt" 2>&1 || rc=$?
    echo "$rc" >"$out/microseed-status.rc"
}

do_apply() {
    local base="$1" out="$2" seed_kind="$3" seed="$4" loop="$5"
    shift 5
    local m="$out/.merged" i=0 mac rc stage t0
    overlay "$base" "$out/upper" "$out/.work" "$m"
    setup_root "$m" "$([[ "$seed_kind" == dev ]] && echo "$loop")"

    ip link set lo up
    for mac in "$@"; do
        ip link add "msnic$i" type veth peer name "mspeer$i"
        ip link set "msnic$i" address "$mac"
        ip link set "mspeer$i" up
        i=$((i + 1))
    done
    hostname microseed-test

    ms_install_fakes "$m"
    # A machine where snap cannot work: every MicroK8s step must fail, and
    # every step not depending on one must still happen.
    if [[ -n "${MS_NO_SNAP:-}" ]]; then
        rm -f "$m/usr/bin/snap" "$m/snap/bin/microk8s" "$m/usr/local/bin/microk8s"
    fi
    # sshd as Ubuntu 22.10+ runs it: ssh.socket listens, ssh.service is
    # started by it.
    if [[ -n "${MS_SSH_SOCKET:-}" ]]; then
        in_root "$m" systemctl disable --quiet ssh.service
        in_root "$m" systemctl enable --quiet ssh.socket
    fi
    if [[ "$seed_kind" == dir ]]; then
        mkdir -p "$m/var/lib/cloud/seed/nocloud"
        cp "$seed"/* "$m/var/lib/cloud/seed/nocloud/"
    fi

    : >"$out/stages.log"
    : >"$out/stages.rc"
    for stage in "init --local" "init" "modules --mode config" "modules --mode final"; do
        # shellcheck disable=SC2086 # stage is split on purpose
        set -- cloud-init $stage
        echo "=== $* ===" >>"$out/stages.log"
        rc=0
        t0="$EPOCHREALTIME"
        ms_timeout "$STAGE_TIMEOUT" chroot "$m" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root \
            LANG=C.UTF-8 TERM=dumb SYSTEMD_OFFLINE=1 "$@" >>"$out/stages.log" 2>&1 </dev/null || rc=$?
        echo "$* rc=$rc ($(elapsed "$t0") s)" >>"$out/stages.rc"
    done

    rc=0
    in_root "$m" cloud-init status --long >"$out/status.txt" 2>&1 || rc=$?
    echo "$rc" >"$out/status.rc"
    boot_steps "$m" "$out"
    cp "$m/run/cloud-init/result.json" "$out/result.json" 2>/dev/null || echo '{}' >"$out/result.json"
    cp "$m/var/log/cloud-init.log" "$out/cloud-init.log" 2>/dev/null || : >"$out/cloud-init.log"
    cp "$m/var/log/cloud-init-output.log" "$out/cloud-init-output.log" 2>/dev/null || : >"$out/cloud-init-output.log"
    cp "$m/var/log/fake-microk8s.calls" "$out/fake-microk8s.calls" 2>/dev/null || : >"$out/fake-microk8s.calls"
    cp "$m/var/log/fake-apt.calls" "$out/fake-apt.calls" 2>/dev/null || : >"$out/fake-apt.calls"
    hostname >"$out/hostname.txt"
    { in_root "$m" ufw status verbose 2>&1 || echo "rc=$?"; } >"$out/ufw-status.txt"
    { ip -4 addr; ip -o link; ip route; } >"$out/ip.txt" 2>&1
    grep -hoE 'DataSource[A-Za-z]+ \[[^]]*\](\[[^]]*\])*' "$out/cloud-init.log" | sort -u >"$out/datasource.txt" || true

    # The merged rootfs, readable after the namespace is gone: everything but
    # /usr (only /usr/local and files the run changed under /usr are copied;
    # all changes are also in OUTDIR/upper) and pseudo filesystems.
    mkdir -p "$out/root"
    tar -C "$m" --numeric-owner --xattrs --exclude=./usr --exclude=./proc --exclude=./sys \
        --exclude=./dev --exclude=./var/cache/apt --exclude=./var/lib/apt/lists -cf - . |
        tar -C "$out/root" --numeric-owner -xf -
    mkdir -p "$out/root/usr" "$out/root/proc" "$out/root/sys" "$out/root/dev"
    tar -C "$m" --numeric-owner -cf - ./usr/local | tar -C "$out/root" --numeric-owner -xf -
    if [[ -d "$out/upper/usr" ]]; then
        (cd "$out/upper" && find ./usr -path ./usr/local -prune -o ! -type c -print0) |
            (cd "$m" && tar --null --no-recursion --numeric-owner -T - -cf -) |
            tar -C "$out/root" --numeric-owner -xf -
    fi
}

case "${1:-}" in
schema) shift; do_schema "$@" ;;
apply) shift; do_apply "$@" ;;
*) ms_die "usage: chroot-ns.sh schema|apply ..." ;;
esac
