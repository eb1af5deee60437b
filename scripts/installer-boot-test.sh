#!/usr/bin/env bash
# Boot an installer image under qemu (TCG, no network) from the cached bookworm
# chroot and write the serial console to a log.
#   installer-boot-test.sh IMAGE bios|uefi LOGFILE [TIMEOUT_SECONDS [MONITOR]]
# bios boots with SeaBIOS (qemu's default), uefi with OVMF. The image is
# attached read-only as a virtio disk, as a USB stick written raw would be.
# MONITOR: a file name; qemu's monitor then listens on a Unix socket of that
# name beside LOGFILE (a test types at the boot menu with `sendkey`).
# Exit status: qemu's (0 when the guest powered off), 124 on timeout.
set -euo pipefail
img="$(realpath "${1:?image}")"
mode="${2:?bios|uefi}"
log="${3:?log file}"
limit="${4:-300}"
monitor="${5:-}"
case "$monitor" in
  */*) echo "MONITOR is a file name, put beside LOGFILE" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
root="$("$here/installer-qemu-chroot.sh")"
case "$mode" in
  bios) fw=() ;;
  uefi) fw=(-bios /usr/share/ovmf/OVMF.fd) ;;
  *) echo "mode must be bios or uefi" >&2; exit 2 ;;
esac
: > "$log"
log="$(realpath "$log")"
# A private mount namespace (nothing leaks to the host's mounts), an empty
# network namespace (nothing leaves the machine) and a PID namespace whose
# PID 1 is the inner shell (then timeout): when it ends, or unshare is
# killed, the kernel kills qemu with it.
# shellcheck disable=SC2016 # the inner bash expands them, from its arguments
exec unshare --mount --net --pid --fork --kill-child -- bash -euo pipefail -c '
  root="$1"; img="$2"; log="$3"; limit="$4"; monitor="$5"; shift 5
  mon=(-monitor none)
  if [ -n "$monitor" ]; then mon=(-monitor "unix:/mnt/log/$monitor,server,nowait"); fi
  mount --make-rprivate /
  mkdir -p "$root/mnt/img" "$root/mnt/log"
  mount --bind -o ro "$(dirname "$img")" "$root/mnt/img"
  mount --bind "$(dirname "$log")" "$root/mnt/log"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs tmpfs "$root/tmp"
  exec timeout --foreground "$limit" chroot "$root" qemu-system-x86_64 -accel tcg -m 1024 -smp 1 \
    -nographic -no-reboot "${mon[@]}" -serial "file:/mnt/log/$(basename "$log")" -nic none \
    -drive "file=/mnt/img/$(basename "$img"),format=raw,if=virtio,readonly=on" "$@" </dev/null >/dev/null
' boot "$root" "$img" "$log" "$limit" "$monitor" "${fw[@]}"
