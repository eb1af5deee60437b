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
#   - microseed flash out/worker-1 LOOP --yes        (write, flush, read back, compare)
# microseed is pointed at a fake sysfs tree (MICROSEED_FLASH_SYSROOT) that
# calls the loop device a removable stick: loop devices are fixed disks in
# sysfs. The bytes still go to the real loop device.
#
# Image and backing file live on BENCH_DIR (default /dev/shm): the figures
# measure the tools, not a disk shared with other users. A real USB stick is
# 10-100x slower than this and both tools then wait on it alike.
# Needs root (losetup). Prints the table; exits 0 unless a step fails.
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
cleanup() {
    if [ -n "$loop" ]; then losetup -d "$loop" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

log "a ${mib} MiB image in $work"
mkdir -p "$work/out/worker-1"
head -c "$((mib << 20))" /dev/urandom >"$work/out/worker-1/installer.img"
(cd "$work/out" && sha256sum worker-1/installer.img >SHA256SUMS)
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

img="$work/out/worker-1/installer.img"
export MICROSEED_FLASH_SYSROOT="$fake"
hyperfine --runs "$runs" --style basic --export-markdown "$work/table.md" \
    -n "dd bs=4M conv=fsync" "dd if=$img of=$loop bs=4M conv=fsync status=none" \
    -n "dd + sha256sum of the device" "dd if=$img of=$loop bs=4M conv=fsync status=none && sha256sum $loop >/dev/null" \
    -n "microseed flash (write + read-back)" "$bin flash $work/out/worker-1 $loop --yes >/dev/null"
echo
cat "$work/table.md"
echo
log "one flash's own figures:"
"$bin" flash "$work/out/worker-1" "$loop" --yes
