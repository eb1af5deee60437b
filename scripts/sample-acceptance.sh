#!/usr/bin/env bash
# sample-acceptance.sh [--plain] [OUT]
# Development proof: the sample seed (tests/fixtures/sample-seed, the worker)
# as SEED_IMG_DIR/worker/{seed.img,meta-data,network-config,role}, then
# scripts/acceptance.sh on it. --plain makes a bare FAT seed (found as
# /dev/vdb) instead of the GPT one (/dev/vdb1).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

plain=""
if [[ "${1:-}" == --plain ]]; then
    plain=--plain
    shift
fi
out="${1:-$(mktemp -d /tmp/microseed-sample.XXXXXX)}"
src="$MS_REPO_DIR/tests/fixtures/sample-seed"
mkdir -p "$out/seeds/worker"
"$MS_LIB_DIR/make-seed-img.sh" "$src" "$out/seeds/worker/seed.img" $plain
cp "$src/meta-data" "$src/network-config" "$out/seeds/worker/"
echo worker >"$out/seeds/worker/role"
exec "$MS_SCRIPTS_DIR/acceptance.sh" --out "$out/results" "$out/seeds"
