#!/usr/bin/env bash
# qemu-ns.sh VMDIR WORKDIR SEED_IMG MAC
# Runs as PID 1 of fresh mount/net/pid namespaces (scripts/acceptance.sh):
# qemu from the bookworm chroot VMDIR/root, no route out (empty net
# namespace, slirp restrict=on). Mounts vanish with the namespace.
# MS_TAP=IFNAME: the NIC is that existing tap device instead (the
# shared-network phase, cluster-phase.sh: run in its net namespace);
# MS_SMP: vCPUs (default 2); MS_MEM: MiB of memory (default 2048);
# MS_ACCEL: qemu's accelerator (default tcg; scripts/ha-vm.sh uses kvm
# where /dev/kvm opens). MS_EXTRA_QEMU: more qemu arguments, split on
# blanks (more disks and cards for tests/discover.rs; files under WORKDIR are
# /tmp/ms/work inside).
set -euo pipefail
vm="$1" work="$2" seed="$3" mac="$4"
read -r -a extra <<<"${MS_EXTRA_QEMU:-}"
r="$vm/root"
netdev="user,id=n0,restrict=on"
if [[ -n "${MS_TAP:-}" ]]; then
    netdev="tap,id=n0,ifname=$MS_TAP,script=no,downscript=no"
fi

mount --make-rprivate /
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o mode=1777 tmp "$r/tmp"
mkdir -p "$r/tmp/ms/vm" "$r/tmp/ms/work" "$r/tmp/ms/seed"
mount --bind -o ro "$vm" "$r/tmp/ms/vm"
mount --bind "$work" "$r/tmp/ms/work"
touch "$r/tmp/ms/seed/seed.img"
mount --bind -o ro "$seed" "$r/tmp/ms/seed/seed.img"

exec chroot "$r" qemu-system-x86_64 -accel "${MS_ACCEL:-tcg}" -m "${MS_MEM:-2048}" -smp "${MS_SMP:-2}" -nographic -no-reboot \
    -monitor none \
    -kernel /tmp/ms/vm/vmlinuz -initrd /tmp/ms/vm/initrd.img \
    -append "root=/dev/vda rw console=ttyS0${MS_EXTRA_APPEND:+ $MS_EXTRA_APPEND}" \
    -drive file=/tmp/ms/work/overlay.qcow2,format=qcow2,if=virtio \
    -drive file=/tmp/ms/seed/seed.img,format=raw,if=virtio,readonly=on \
    -netdev "$netdev" -device "virtio-net-pci,netdev=n0,mac=$mac" \
    -serial file:/tmp/ms/work/console.log -serial file:/tmp/ms/work/report.txt \
    "${extra[@]}"
