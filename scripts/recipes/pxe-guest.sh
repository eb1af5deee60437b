#!/usr/bin/env bash
# Build the netboot test's guest: a Debian kernel (OUTDIR/vmlinuz, EFI stub,
# so iPXE boots it under OVMF as well as SeaBIOS) and a busybox initramfs
# (OUTDIR/initrd) whose init, on the serial console:
#   PXETEST-CMDLINE: <the kernel command line the menu gave>
#   PXETEST-IP: <address from DHCP>
#   PXETEST-SEED: <URL>            the s= of the ds=nocloud-net argument
#   PXETEST-META-DATA: <line>      each line of SEED/meta-data, fetched over HTTP
#   PXETEST-DONE
# then powers off. Used by scripts/pxe-boot-test.sh.
# Skips the build when the outputs exist and were made by this very script.
#   pxe-guest.sh OUTDIR
set -euo pipefail
# The busybox initramfs kit both recipes share (hashed into the stamp too).
kit="$(cd "$(dirname "$0")/../lib" && pwd)/initrd-kit.sh"
out="${1:?usage: pxe-guest.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# One build at a time (test binaries may ask concurrently).
exec 9>"$out/.lock"
flock 9
stamp="$(cat "$0" "$kit" | sha256sum | cut -c1-64)"
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
for t in cpio gzip apt-get apt-cache dpkg-deb; do
  command -v "$t" >/dev/null || { echo "pxe-guest.sh: missing tool $t (see scripts/deps/pxe.apt)" >&2; exit 1; }
done

export SOURCE_DATE_EPOCH=1600000000 TZ=UTC LC_ALL=C
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

# shellcheck source-path=SCRIPTDIR source=../lib/initrd-kit.sh
. "$kit"
kit_unpack pxe-guest.sh
kit_add_mod virtio_pci virtio_net
# udhcpc needs packet sockets; built in or a module, depending on the kernel.
if find "$moddir" -name af_packet.ko | grep -q .; then kit_add_mod af_packet; fi
kit_mod_order

cat > initrd/bin/dhcp-event <<'EV'
#!/bin/busybox sh
# udhcpc's event script: take the address, nothing else.
case "$1" in
  bound|renew) ip addr add "$ip/${mask:-20}" dev "$interface" ;;
esac
EV
chmod 755 initrd/bin/dhcp-event

cat > initrd/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec >/dev/ttyS0 2>&1
echo "PXETEST-CMDLINE: $(cat /proc/cmdline)"
for m in $(cat /mods/order); do insmod "/mods/$m.ko" 2>/dev/null; done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -s /bin/dhcp-event >/dev/null 2>&1 || echo "PXETEST-ERROR: no DHCP lease"
echo "PXETEST-IP: $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
seed=""
for w in $(cat /proc/cmdline); do
  case "$w" in
    ds=nocloud-net\;s=*) seed="${w#ds=nocloud-net;s=}" ;;
  esac
done
echo "PXETEST-SEED: $seed"
if [ -n "$seed" ]; then
  # The first try may come before the bridge forwards this port.
  i=0
  # (busybox 1.35's wget -T crashes: timeout(1) bounds it instead.)
  until timeout 10 wget -O /meta-data "${seed}meta-data" 2>/wget.err || [ $i -ge 5 ]; do
    sleep 2; i=$((i+1))
  done
  if [ -s /meta-data ]; then
    sed 's/^/PXETEST-META-DATA: /' /meta-data
  else
    echo "PXETEST-ERROR: cannot fetch ${seed}meta-data: $(cat /wget.err)"
  fi
fi
echo "PXETEST-DONE"
sync
poweroff -f
INIT
chmod 755 initrd/init
find initrd -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd initrd && find . | LC_ALL=C sort | cpio --quiet --reproducible -o -H newc -R 0:0) | gzip -n -9 > initrd.gz

cp "kern/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
cp initrd.gz "$out/initrd.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.tmp" "$out/initrd"
echo "$stamp" > "$out/.stamp"
