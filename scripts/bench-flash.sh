#!/usr/bin/env bash
# `microseed flash` against `dd bs=4M conv=fsync`, same image, same loop device.
#
#   sudo scripts/bench-flash.sh
#
# Builds target/release/microseed, writes an output tree holding one random
# installer.img of BENCH_FLASH_MIB MiB (default 1024, about an Ubuntu ISO)
# listed in SHA256SUMS, attaches a loop device over a file of that size, and
# times with hyperfine (BENCH_RUNS runs, default 3, medians):
#   - dd if=IMG of=LOOP bs=4M conv=fsync             (write only)
#   - dd ... conv=fsync, then sha256sum LOOP         (write, then a read-back check)
#   - microseed flash out LOOP --yes                 (write, flush, read back, compare)
# microseed is pointed at a fake sysfs tree (MICROSEED_FLASH_SYSROOT) that
# calls the loop device a removable stick: loop devices are fixed disks in
# sysfs. The bytes still go to the real loop device.
#
# Image and backing file live on BENCH_DIR (default /dev/shm): the figures
# measure the tools, not a disk shared with other users. A real USB stick is
# 10-100x slower than this and both tools then wait on it alike.
#
# Then, with a stand-in installer ISO grown to BENCH_ISO_MB MB (default 1200,
# like scripts/bench.sh; xorriso) and the example cluster (3 machines, one
# cluster stick):
#   - `build --format installer` on XFS (reflink: the ISO's extents are
#     shared, FICLONE) and on tmpfs (no reflink: copy_file_range), each
#     against `cp --reflink=never` of the ISO on the same filesystem, with
#     the space the image took on XFS (df before and after);
#   - `build --format installer` + `flash out` against the streamed
#     `flash CLUSTER --iso ISO` (no image file).
# BENCH_REFLINK=0 skips the XFS part (it needs mkfs.xfs, package xfsprogs).
# Needs root (losetup, mount). Prints the tables; exits 0 unless a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

mib="${BENCH_FLASH_MIB:-1024}"
runs="${BENCH_RUNS:-3}"
base="${BENCH_DIR:-/dev/shm}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-flash.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (losetup)"
for t in hyperfine losetup dd sha256sum cargo; do
    command -v "$t" >/dev/null || die "missing $t (see scripts/deps/bench.apt, flash.apt)"
done

log "cargo build --release"
cargo build --release --quiet
bin="$PWD/target/release/microseed"

work="$(mktemp -d "$base/microseed-bench-flash.XXXXXX")"
loop=""
xfs_mnt=""
cleanup() {
    if [ -n "$xfs_mnt" ]; then umount "$xfs_mnt" || true; fi
    if [ -n "$loop" ]; then losetup -d "$loop" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

log "a ${mib} MiB image in $work"
mkdir -p "$work/out"
head -c "$((mib << 20))" /dev/urandom >"$work/out/installer.img"
(cd "$work/out" && sha256sum installer.img >SHA256SUMS)
truncate -s "$((mib << 20))" "$work/backing"
loop="$(losetup --find --show "$work/backing")"
name="$(basename "$loop")"

# The fake tree: the loop device as a removable stick, nothing mounted.
fake="$work/fake"
mkdir -p "$fake/sys/block/$name/device" "$fake/sys/class/block" "$fake/proc/self"
cp "/sys/class/block/$name/dev" "$fake/sys/block/$name/dev"
echo "$((mib * 2048))" >"$fake/sys/block/$name/size"
echo 1 >"$fake/sys/block/$name/removable"
echo 0 >"$fake/sys/block/$name/ro"
echo Bench >"$fake/sys/block/$name/device/vendor"
echo Loop >"$fake/sys/block/$name/device/model"
ln -s "../../block/$name" "$fake/sys/class/block/$name"
echo "21 1 0:20 / /proc rw - proc proc rw" >"$fake/proc/self/mountinfo"
printf 'Filename\tType\tSize\tUsed\tPriority\n' >"$fake/proc/swaps"

img="$work/out/installer.img"
export MICROSEED_FLASH_SYSROOT="$fake"
hyperfine --runs "$runs" --style basic --export-markdown "$work/table.md" \
    -n "dd bs=4M conv=fsync" "dd if=$img of=$loop bs=4M conv=fsync status=none" \
    -n "dd + sha256sum of the device" "dd if=$img of=$loop bs=4M conv=fsync status=none && sha256sum $loop >/dev/null" \
    -n "microseed flash (write + read-back)" "$bin flash $work/out $loop --yes >/dev/null"
echo
cat "$work/table.md"
echo
log "one flash's own figures:"
"$bin" flash "$work/out" "$loop" --yes
rm -rf "$work/out"

# ---- installer images: reflink or copy, file or stream -----------------------
command -v xorriso >/dev/null || die "missing xorriso (scripts/deps/installer.apt)"
iso_dir=/var/cache/microseed-test/standin-iso
scripts/recipes/standin-iso.sh "$iso_dir"
iso="$work/standin-full.iso"
head -c "${BENCH_ISO_MB:-1200}M" /dev/zero >"$work/filler"
xorriso -indev "$iso_dir/ubuntu2004-standin.iso" -outdev "stdio:$iso" \
    -map "$work/filler" /casper/filesystem.squashfs -boot_image any replay >/dev/null 2>&1
rm -f "$work/filler"
mkdir -p "$work/cluster"
cp examples/eth2-staking/cluster.yaml "$work/cluster/"
cluster="$work/cluster/cluster.yaml"
"$bin" build "$cluster" -o "$work/warm" --format dir >/dev/null 2>&1 # creates secrets.yaml
rm -rf "$work/warm"
build() { echo "$bin build $cluster -o $1 --format installer --iso $2"; }
log "installer image vs cp ($(du -h --apparent-size "$iso" | cut -f1) stand-in ISO)"

if [ "${BENCH_REFLINK:-1}" = 1 ]; then
    command -v mkfs.xfs >/dev/null || die "missing mkfs.xfs (xfsprogs), or set BENCH_REFLINK=0"
    truncate -s 6G "$work/xfs.img"
    mkfs.xfs -q -m reflink=1 "$work/xfs.img"
    xfs_mnt="$work/xfs"
    mkdir -p "$xfs_mnt"
    mount -o loop "$work/xfs.img" "$xfs_mnt"
    cp "$iso" "$xfs_mnt/standin.iso"
    sync
    used0="$(df --output=used -B1M "$xfs_mnt" | tail -1)"
    "$bin" build "$cluster" -o "$xfs_mnt/once" --format installer --iso "$xfs_mnt/standin.iso" >/dev/null
    sync
    used1="$(df --output=used -B1M "$xfs_mnt" | tail -1)"
    rm -rf "$xfs_mnt/once"
    echo "XFS: one installer image took $((used1 - used0)) MiB of disk for a $(du -m --apparent-size "$iso" | cut -f1) MiB image (reflinked)"
    hyperfine --runs "$runs" --style basic --export-markdown "$work/reflink.md" \
        --prepare "rm -rf $xfs_mnt/inst $xfs_mnt/copy.iso $work/inst $work/copy.iso" \
        -n "build installer on XFS (reflink)" "$(build "$xfs_mnt/inst" "$xfs_mnt/standin.iso")" \
        -n "cp --reflink=never on XFS" "cp --reflink=never $xfs_mnt/standin.iso $xfs_mnt/copy.iso" \
        -n "build installer on tmpfs (copy)" "$(build "$work/inst" "$iso")" \
        -n "cp on tmpfs" "cp $iso $work/copy.iso"
    echo
    cat "$work/reflink.md"
    echo
fi

# Flash the installer: build the file then flash it, or stream it.
"$bin" build "$cluster" -o "$work/inst" --format installer --iso "$iso" >/dev/null
size="$(stat -c %s "$work/inst/installer.img")"
rm -rf "$work/inst"
losetup -d "$loop"
loop=""
truncate -s "$size" "$work/backing"
loop="$(losetup --find --show "$work/backing")"
name2="$(basename "$loop")"
if [ "$name2" != "$name" ]; then
    mv "$fake/sys/block/$name" "$fake/sys/block/$name2"
    rm "$fake/sys/class/block/$name"
    ln -s "../../block/$name2" "$fake/sys/class/block/$name2"
    cp "/sys/class/block/$name2/dev" "$fake/sys/block/$name2/dev"
fi
echo "$((size / 512))" >"$fake/sys/block/$name2/size"
hyperfine --runs "$runs" --style basic --export-markdown "$work/stream.md" \
    --prepare "rm -rf $work/inst" \
    -n "build installer.img + flash out" \
    "$(build "$work/inst" "$iso") >/dev/null && $bin flash $work/inst $loop --yes >/dev/null" \
    -n "flash CLUSTER (streamed)" \
    "$bin flash $cluster $loop --iso $iso --yes >/dev/null"
echo
cat "$work/stream.md"
