#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# lvm-vm.sh CASES_DIR OUTDIR: runs the storage late-command's cases
# (scripts/vm/lvm-guest.sh says what a case is) against real LVM in a
# Debian VM, and writes OUTDIR/report.txt (CASE.KEY=VALUE lines) and
# OUTDIR/console.log. Exit 0 when the report is complete (END), whatever the
# cases found: tests/install_phase.rs judges them.
#
# Why a VM: this project's test machines run a kernel without device-mapper
# (no dm-mod, no modules at all), so LVM cannot activate a volume on the host.
# The VM is the acceptance run's (scripts/acceptance.sh build, cached): its
# Debian 12 kernel loads dm-mod. The LVM userland is the host's own lvm2
# (Debian 12, the guest's release too; scripts/deps/install-phase.apt),
# copied onto a throwaway overlay of the guest's root. The test disk is a
# sparse file (48 GiB apparent, a few hundred MiB written) deleted afterwards;
# qemu runs in empty network and mount namespaces, as the acceptance run's.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

[[ $# -eq 2 ]] || ms_die "usage: lvm-vm.sh CASES_DIR OUTDIR"
ms_need_root
cases="$(realpath -e "$1")"
mkdir -p "$2"
out="$(realpath -e "$2")"
for t in qemu-img mkfs.ext4 unshare dpkg-query; do
    command -v "$t" >/dev/null || ms_die "$t is missing"
done
[[ -x /sbin/lvm ]] || ms_die "lvm2 is not installed on this host (scripts/deps/install-phase.apt)"

"$MS_REPO_DIR/scripts/acceptance.sh" build >&2
vm="$(ms_cache_dir)/bookworm-vm"
ms_lock bookworm-vm --shared

work="$(mktemp -d /var/tmp/microseed-lvm.XXXXXX)"
ms_on_exit "rm -rf '$work'"
pay="$work/payload"
mkdir -p "$pay/rootfs" "$pay/lvm" "$pay/cases"
install -m 755 "$MS_SCRIPTS_DIR/vm/lvm-guest.sh" "$pay/guest.sh"
install -m 644 "$MS_REPO_DIR/tests/fixtures/lvm/lvm.conf" "$pay/lvm/lvm.conf"
cp -r "$cases/." "$pay/cases/"
# The host's lvm2 and the libraries it brings that the guest lacks.
for pkg in lvm2 dmsetup libdevmapper1.02.1 libdevmapper-event1.02.1 liblvm2cmd2.03 dmeventd libaio1 libedit2 libbsd0 libmd0; do
    if dpkg-query --admindir="$vm/root/var/lib/dpkg" -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
        continue
    fi
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
        ms_die "host package $pkg is not installed (scripts/deps/install-phase.apt)"
    dpkg-query -L "$pkg" | while read -r f; do
        if [[ -f "$f" || -L "$f" ]] && [[ ! -d "$f" ]]; then
            # The guest's /sbin, /bin and /lib are links into /usr (merged
            # /usr): copying a directory over them would fail.
            d=$f
            case $f in /sbin/* | /bin/* | /lib/*) d=/usr$f ;; esac
            mkdir -p "$pay/rootfs$(dirname "$d")"
            cp -a "$f" "$pay/rootfs$d"
        fi
    done
done
truncate -s 128M "$work/payload.img"
mkfs.ext4 -q -F -L payload -d "$pay" "$work/payload.img" 128M
truncate -s 48G "$work/disk.img"
qemu-img create -q -f qcow2 -F raw -b /tmp/ms/vm/root.img -u "$work/overlay.qcow2" 3G
: >"$out/console.log"
: >"$out/report.txt"

# PID 1 is the guest script, from the payload disk, started by a one-line sh
# (the kernel passes the words after `--` to init).
init_cmd='mount -o remount,rw / && mkdir -p /mnt/payload && mount -o ro /dev/vdc /mnt/payload && exec sh /mnt/payload/guest.sh'
t0=$SECONDS
rc=0
# shellcheck disable=SC2016 # the inner script expands its own arguments
ms_timeout "${MS_LVM_TIMEOUT:-600}" unshare --mount --net --pid --ipc --fork --kill-child -- bash -c '
    set -e
    vm=$1 work=$2 out=$3 r=$1/root cmd=$4
    mount --make-rprivate /
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    mount -t tmpfs -o mode=1777 tmp "$r/tmp"
    mkdir -p "$r/tmp/ms/vm" "$r/tmp/ms/work" "$r/tmp/ms/out"
    mount --bind -o ro "$vm" "$r/tmp/ms/vm"
    mount --bind "$work" "$r/tmp/ms/work"
    mount --bind "$out" "$r/tmp/ms/out"
    exec chroot "$r" qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nographic -no-reboot \
        -monitor none \
        -kernel /tmp/ms/vm/vmlinuz -initrd /tmp/ms/vm/initrd.img \
        -append "root=/dev/vda rw console=ttyS0 panic=-1 quiet init=/bin/sh -- -c \"$cmd\"" \
        -drive file=/tmp/ms/work/overlay.qcow2,format=qcow2,if=virtio \
        -drive file=/tmp/ms/work/disk.img,format=raw,if=virtio \
        -drive file=/tmp/ms/work/payload.img,format=raw,if=virtio,readonly=on \
        -nic none \
        -serial file:/tmp/ms/out/console.log -serial file:/tmp/ms/out/report.txt
' lvm-vm "$vm" "$work" "$out" "$init_cmd" || rc=$?
echo "$((SECONDS - t0))" >"$out/seconds"
if ! grep -q '^END' "$out/report.txt"; then
    ms_warn "qemu rc $rc; no complete report; console (last 60 lines of $out/console.log):"
    tail -n 60 "$out/console.log" | tr -d '\r' >&2
    exit 1
fi
ms_log "VM run done in $((SECONDS - t0)) s"
