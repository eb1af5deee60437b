#!/usr/bin/env bash
# Build (once) a Debian bookworm chroot holding qemu-system-x86 and OVMF, for the
# installer boot tests. The host's qemu-utils backport conflicts with Debian's
# qemu-system-x86, so qemu runs from this chroot instead.
# Prints the chroot path. Cached at ${MICROSEED_TEST_CACHE:-/var/cache/microseed-test}/bookworm-qemu.
set -euo pipefail
cache="${MICROSEED_TEST_CACHE:-/var/cache/microseed-test}"
root="$cache/bookworm-qemu"
if [ -e "$root/.complete" ]; then echo "$root"; exit 0; fi
mkdir -p "$cache"
# One build at a time: the installer and netboot tests may ask at once, and
# a second build would replace the chroot under the first one's qemu.
exec 9>"$cache/.bookworm-qemu.lock"
flock 9
if [ -e "$root/.complete" ]; then echo "$root"; exit 0; fi
# The mirror the machine's own apt sources name (deb822 or one-line format).
mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -oE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' | awk '{print $2}' | head -n1 || true)"
[ -n "$mirror" ] || { echo "no Debian mirror found in apt sources" >&2; exit 1; }
tmp="$root.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
debootstrap --variant=minbase --include=qemu-system-x86,ovmf bookworm "$tmp" "$mirror" >&2
test -x "$tmp/usr/bin/qemu-system-x86_64"
test -f "$tmp/usr/share/ovmf/OVMF.fd"
rm -rf "$root"
mv "$tmp" "$root"
trap - EXIT
touch "$root/.complete"
echo "$root"
