# shellcheck shell=bash
# Sourced by the recipes that boot a tiny busybox initramfs on a Debian
# kernel (recipes/standin-iso.sh, recipes/pxe-guest.sh): fetches the kernel
# and busybox-static packages, unpacks them, and copies kernel modules into
# the initramfs with their dependencies first. Run in an empty work dir:
#   kit_unpack NAME          debs/, kern/, bb/, initrd/ with busybox; sets
#                            $kver and $moddir (NAME prefixes messages)
#   kit_add_mod MODULE...    copies each, dependencies first, once
#   kit_mod_order            writes initrd/mods/order (the insmod order)
kit_unpack() {
  kit_name="$1"
  local kpkg
  kpkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
  [ -n "$kpkg" ] || { echo "$kit_name: cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 1; }
  mkdir debs
  (cd debs && apt-get download -q "$kpkg" busybox-static >/dev/null 2>&1) \
    || { echo "$kit_name: apt-get download $kpkg busybox-static failed" >&2; exit 1; }
  dpkg-deb -x debs/linux-image-*.deb kern
  dpkg-deb -x debs/busybox-static_*.deb bb
  kver="$(ls kern/lib/modules)"
  moddir="kern/lib/modules/$kver/kernel"
  mkdir -p initrd/bin initrd/proc initrd/sys initrd/dev initrd/mods
  cp bb/bin/busybox initrd/bin/busybox
  declare -gA kit_seen=()
  kit_order=()
}

kit_add_mod() {
  local name path deps d
  for name in "$@"; do
    [ -n "${kit_seen[$name]:-}" ] && continue
    kit_seen[$name]=1
    path="$(find "$moddir" -name "$name.ko" -o -name "$(echo "$name" | tr _ -).ko" | head -n1)"
    [ -n "$path" ] || { echo "$kit_name: module $name not found" >&2; exit 1; }
    deps="$(grep -a -o 'depends=[a-z0-9_,-]*' "$path" | head -n1 | cut -d= -f2 | tr , ' ')"
    # shellcheck disable=SC2086 # a space-separated list of module names
    for d in $deps; do kit_add_mod "$d"; done
    cp "$path" "initrd/mods/$name.ko"
    kit_order+=("$name")
  done
}

kit_mod_order() {
  printf '%s\n' "${kit_order[@]}" > initrd/mods/order
}
