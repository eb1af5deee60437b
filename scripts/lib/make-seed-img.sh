#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make-seed-img.sh SEED_DIR OUT_IMG [--plain]
# Development helper: a NoCloud seed disk from SEED_DIR/{user-data,meta-data[,network-config]}.
# Default: 8 MiB GPT image, one partition (sector 2048 to the end, type 0700,
# name CIDATA) holding a FAT filesystem labelled CIDATA (the layout cloud-init
# finds as /dev/vdb1). --plain: a bare 4 MiB FAT image (found as /dev/vdb).
# Uses mkfs.vfat, mcopy and sgdisk from the host (scripts/deps/vmtest.apt).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

[[ $# -ge 2 ]] || ms_die "usage: make-seed-img.sh SEED_DIR OUT_IMG [--plain]"
src="$1" out="$2" plain="${3:-}"
for f in user-data meta-data; do
    [[ -f "$src/$f" ]] || ms_die "$src/$f missing (a NoCloud seed needs user-data and meta-data)"
done
files=("$src/user-data" "$src/meta-data")
[[ -f "$src/network-config" ]] && files+=("$src/network-config")
[[ -f "$src/vendor-data" ]] && files+=("$src/vendor-data")
mkdir -p "$(dirname "$out")"
rm -f "$out"

if [[ "$plain" == "--plain" ]]; then
    mkfs.vfat -n CIDATA -C "$out" 4096 >/dev/null
    mcopy -o -i "$out" "${files[@]}" ::
    exit 0
fi

truncate -s 8M "$out"
sgdisk -o -n 1:2048:0 -t 1:0700 -c 1:CIDATA "$out" >/dev/null
start=2048
end="$(sgdisk -i 1 "$out" | awk '/^Last sector:/ {print $3}')"
[[ "$end" =~ ^[0-9]+$ ]] || ms_die "could not read the partition end from sgdisk"
part="$(mktemp)"
ms_on_exit "rm -f '$part'"
truncate -s $(((end - start + 1) * 512)) "$part"
mkfs.vfat -n CIDATA "$part" >/dev/null
mcopy -o -i "$part" "${files[@]}" ::
dd if="$part" of="$out" bs=512 seek="$start" conv=notrunc status=none
sgdisk -v "$out" | grep -q 'No problems found' || ms_die "sgdisk -v reports problems in $out"
