#!/usr/bin/env bash
# Netboot the PXE tree a build wrote, as docs/pxe.md says, in qemu guests on
# a LAN with no route out (scripts/vm/pxe-lab-ns.sh): the generated
# dnsmasq.conf unmodified as the proxy beside a plain DHCP server, and
# `microseed serve`.
#   pxe-boot-test.sh PXE_DIR WORK [NAME,bios|uefi,MAC...]
# PXE_DIR is OUT/pxe of a build with --pxe-url http://172.20.10.5:8080 for a
# cluster on 172.20.0.0/20. The boot files are copied in as docs/pxe.md's
# table says: the test guest's kernel and initrd (scripts/recipes/pxe-guest.sh:
# a Debian kernel and a busybox init that prints /proc/cmdline and fetches
# its seed's meta-data) as boot/vmlinuz and boot/initrd, iPXE from the ipxe
# package as tftp/undionly.kpxe and tftp/snponly.efi. Guests boot with SeaBIOS
# (bios) or OVMF (uefi, Secure Boot off). WORK receives every log (see
# vm/pxe-lab-ns.sh), guests.txt and tftp.txt (what TFTP serves of the
# tree); without guests only that TFTP check runs (no qemu, seconds).
# MICROSEED_BIN: the microseed binary.
# Exit 0 when the lab ran (the caller judges the logs); non-zero when it
# could not run, saying why.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

pxe="$(realpath "${1:?PXE_DIR}")"
work="$(realpath "${2:?WORK}")"
shift 2
ms_need_root
[[ -x "${MICROSEED_BIN:-}" ]] || ms_die "MICROSEED_BIN must name the microseed binary"
for t in dnsmasq unshare nsenter ip timeout; do
    command -v "$t" >/dev/null || ms_die "missing $t (scripts/deps/pxe.apt)"
done
for f in /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/snponly.efi; do
    [[ -f "$f" ]] || ms_die "missing $f (package ipxe, scripts/deps/pxe.apt)"
done
[[ -f "$pxe/dnsmasq.conf" ]] || ms_die "$pxe/dnsmasq.conf: not a built PXE tree"

# What docs/pxe.md tells the user to copy in (the ISO aside: this guest
# never fetches it), world-readable for dnsmasq's TFTP.
install -d -m 0700 "$pxe/tftp"
install -m 0644 /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/snponly.efi "$pxe/tftp/"
qroot=/nonexistent
if (($#)); then
    qroot="$("$MS_SCRIPTS_DIR/installer-qemu-chroot.sh")"
    guest="$(ms_cache_dir)/pxe-guest"
    "$MS_SCRIPTS_DIR/recipes/pxe-guest.sh" "$guest"
    install -d -m 0700 "$pxe/boot"
    install -m 0644 "$guest/vmlinuz" "$pxe/boot/vmlinuz"
    install -m 0644 "$guest/initrd" "$pxe/boot/initrd"
fi

mkdir -p "$work"
# PID 1 of the namespaces is the lab; --kill-child takes it and everything
# it started down with unshare, also when the bound below stops unshare.
limit="${MS_PXE_TIMEOUT:-480}"
ms_timeout $((limit + 60)) unshare --mount --net --pid --fork --kill-child --mount-proc \
    "$MS_SCRIPTS_DIR/vm/pxe-lab-ns.sh" "$qroot" "$pxe" "$work" "$@"
