#!/usr/bin/env bash
# The cluster stick's build time against `cp` of the ISO, in the same run, on
# the same filesystem (issue 24: at most 1.2x).
#
#   scripts/bench-stick.sh
#
# Builds target/release/microseed, grows the 20.04 stand-in ISO to
# BENCH_ISO_MB MB (default 1200, about an Ubuntu live-server ISO; xorriso),
# and times with hyperfine (BENCH_RUNS runs, default 5, medians), on
# BENCH_DIR (default /dev/shm: no reflink, so the build copies every byte as
# cp does, and no disk shared with other users in the figures):
#   - cp ISO COPY                                      (the peer)
#   - microseed build CLUSTER --format installer       (3 machines, one image),
#     rebuilt (the image hash's saved state kept) and first built (no state)
#   - the same with --machine worker-1                 (a one-machine stick)
#   - microseed build CLUSTER --format dir             (the seeds, no image)
# then prints the ratios of the medians. Exits 1 when a step fails, 0
# otherwise (the ratio is a measurement, not a gate: a loaded machine moves it).
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

runs="${BENCH_RUNS:-5}"
base="${BENCH_DIR:-/dev/shm}"
die() { printf 'bench-stick.sh: %s\n' "$*" >&2; exit 1; }
for t in hyperfine xorriso cargo python3; do
    command -v "$t" >/dev/null || die "missing $t (see scripts/deps/bench.apt, installer.apt)"
done

cargo build --release --quiet
bin="$PWD/target/release/microseed"
work="$(mktemp -d "$base/microseed-bench-stick.XXXXXX")"
trap 'rm -rf "$work"' EXIT

iso_dir="${MICROSEED_TEST_CACHE:-/var/cache/microseed-test}/standin-iso"
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
machines="$(grep -c '^  - name:' "$cluster")"

# The stick's image hash resumes from a state saved at the seed partition
# (src/iso/hashstate.rs): "warm" is a rebuild from the same ISO (the cache
# kept), "cold" a first build (the cache emptied before each run).
rm_out="rm -rf $work/out $work/copy.iso"
hyperfine --runs "$runs" --warmup 1 --style basic --export-json "$work/t.json" \
    --prepare "$rm_out" -n "cp ISO" "cp $iso $work/copy.iso" \
    --prepare "$rm_out" -n "build --format installer ($machines machines, rebuild)" \
    "$bin build $cluster -o $work/out --format installer --iso $iso --cache-dir $work/cache" \
    --prepare "$rm_out $work/cold" -n "build --format installer ($machines machines, first build)" \
    "$bin build $cluster -o $work/out --format installer --iso $iso --cache-dir $work/cold" \
    --prepare "$rm_out" -n "build --format installer --machine worker-1 (rebuild)" \
    "$bin build $cluster -o $work/out --format installer --iso $iso --machine worker-1 --cache-dir $work/cache" \
    --prepare "$rm_out" -n "build --format dir ($machines machines, no image)" \
    "$bin build $cluster -o $work/out --format dir"
python3 - "$work/t.json" "$(du -m --apparent-size "$iso" | cut -f1)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
cp, warm, cold, one, docs = (x["median"] for x in r)
print(f"ISO {sys.argv[2]} MiB: cp {cp:.3f} s; cluster stick rebuilt {warm:.3f} s, "
      f"ratio {warm / cp:.2f}x (target <= 1.2x); first build (hashes the whole "
      f"ISO) {cold:.3f} s, {cold / cp:.2f}x; one machine's stick {one:.3f} s "
      f"({one / cp:.2f}x); the seeds alone {docs:.3f} s")
PY
