#!/usr/bin/env bash
# The cluster stick in front of Ubuntu's installer: subiquity's
# --dry-run (../shared/tools/subiquity) is given the stick's selector
# user-data, and its early command runs the stick's select.sh for real,
# inside a network namespace whose NIC (a veth) carries a MAC, with the stick's
# files mounted at /run/microseed/stick (a private mount namespace) and the
# dry-run machine's disk (subiquity's examples/simple.json: /dev/sda, 10 GiB,
# ID_SERIAL QEMU_HARDDISK_QM00001) described by lsblk/udevadm stand-ins.
#
#   scripts/stick-dryrun.sh        (root; the harness built by subiquity-tier.sh --setup)
#
# Scenarios (docs/stick.md):
#   known    the NIC has worker-1's MAC: worker-1 is installed (the target's
#            /etc/hostname and netplan are worker-1's, written by its late-commands),
#            at 22.07.2 (22.04 cluster) and 20.04.3 (known-2004, 20.04 cluster)
#   unknown  another MAC: nothing installed (no storage plan), a report on the stick
#   held     worker-1's MAC, but the disk (a loop device with ext4) holds this
#            cluster's /etc/microseed/cluster-id: nothing installed
# Without the bundle or root it says it did not run and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${SQ_TOOL:-$PWD/../shared/tools/subiquity/subiquity-dryrun.sh}
H=${SQ_HARNESS:-/var/tmp/subiquity-harness}
notrun() { echo "stick dry-run: NOT RUN: $*"; exit 0; }
[ -x "$tool" ] || notrun "$tool is missing"
[ "$(id -u)" = 0 ] || notrun "needs root"
[ -d "$H/sq-22.07.2" ] || notrun "no harness in $H (scripts/subiquity-tier.sh --setup)"

work=$(mktemp -d)
loop=
cleanup() {
    if [ -n "$loop" ]; then losetup -d "$loop" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
# The bundle's tool leaves temporary directories behind: under this run's.
export TMPDIR="$work/tmp"
mkdir "$TMPDIR"
bin=${MICROSEED_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=$PWD/target/release/microseed
fi
mac=52:54:00:12:34:56 # simple.json's ens3, worker-1's in this cluster
mkdir -p "$work/c"
sed "s/^    ip: 172.20.10.12\$/    ip: 172.20.10.12\n    mac: $mac/" \
    examples/eth2-staking-22.04/cluster.yaml >"$work/c/cluster.yaml"
grep -q "mac: $mac" "$work/c/cluster.yaml" || { echo "stick dry-run: could not give worker-1 a MAC"; exit 1; }
install -m 600 tests/fixtures/secrets.yaml "$work/c/secrets.yaml"
mkdir -p "$work/c2004"
sed "s/^    ip: 172.20.10.12\$/    ip: 172.20.10.12\n    mac: $mac/" \
    examples/eth2-staking/cluster.yaml >"$work/c2004/cluster.yaml"
install -m 600 tests/fixtures/secrets.yaml "$work/c2004/secrets.yaml"
iso_dir="${MICROSEED_TEST_CACHE:-/var/cache/microseed-test}/standin-iso"
scripts/recipes/standin-iso.sh "$iso_dir"
"$bin" build "$work/c/cluster.yaml" -o "$work/out" --format installer \
    --iso "$iso_dir/ubuntu2204-standin.iso" --cache-dir "$work/cache" >/dev/null
"$bin" build "$work/c2004/cluster.yaml" -o "$work/out2004" --format installer \
    --iso "$iso_dir/ubuntu2004-standin.iso" --cache-dir "$work/cache" >/dev/null 2>&1
cidata() { sfdisk --json "$1" | python3 -c 'import json,sys; print(512 * max(p["start"] for p in json.load(sys.stdin)["partitiontable"]["partitions"]))'; }
# The stick (image@@offset of its CIDATA) and the revision each run uses.
stick=$work/out/installer.img@@$(cidata "$work/out/installer.img")
stick2004=$work/out2004/installer.img@@$(cidata "$work/out2004/installer.img")
REV=22.07.2 STICK=$stick

# lsblk/udevadm as the dry-run machine's disk; vgchange touches nothing.
stub=$work/bin
mkdir -p "$stub"
cat >"$stub/lsblk" <<'EOF'
#!/bin/sh
case "$*" in
*NAME,TYPE,SIZE*) echo "$STICK_DISK disk 10737418240" ;;
*NAME,FSTYPE*) [ -n "${STICK_FS:-}" ] && echo "$STICK_FS ext4" ;;
*NAME,SIZE,MODEL,SERIAL*) echo "sda 10737418240 QEMU_HARDDISK QM00001" ;;
esac
exit 0
EOF
cat >"$stub/udevadm" <<'EOF'
#!/bin/sh
echo ID_SERIAL=QEMU_HARDDISK_QM00001
EOF
printf '#!/bin/sh\nexit 0\n' >"$stub/vgchange"
chmod 755 "$stub"/*

fail=0
# A refused early command leaves subiquity in its ERROR state (22.07.2:
# `_exception_handler`), where the dry-run client waits: a refusal is judged
# after this many seconds (the selector runs within the first few).
refused_after=${STICK_DRYRUN_REFUSED_AFTER:-90}
live=$H/sq-22.07.2/.subiquity

# scenario NIC-MAC disk fs
run() {
    local name=$1 nic_mac=$2 disk=$3 fs=${4:-} wd=$work/$1 limit=400
    case $name in known*) ;; *) limit=$refused_after ;; esac
    mkdir -p "$wd/stick" "$wd/target/etc"
    mcopy -s -n -i "$STICK" "::microseed" "::user-data" "::meta-data" "$wd/stick/"
    # 20.04.3 gives late-commands no TARGET_MOUNT_POINT of its own (as in
    # subiquity-tier.sh); 22.07.2's dry-run target is its working tree.
    # shellcheck disable=SC2016 # the inner sh expands them, from its arguments
    STICK_DISK=$disk STICK_FS=$fs PATH=$stub:$PATH SQ_VERSIONS=$REV TARGET_MOUNT_POINT=$wd/target \
        MICROSEED_AUTOINSTALL=$wd/out/$REV/autoinstall.yaml MICROSEED_SYSFS=$wd/sys \
        unshare --net --mount --pid --fork --kill-child --mount-proc -- sh -euc '
        mount --make-rprivate /
        ip link add ens3 type veth peer name p0
        ip link set ens3 address "$1"
        ip link set ens3 up
        # A sysfs of this namespace for select.sh (MICROSEED_SYSFS): /sys
        # itself stays, journald needs what is mounted under it.
        mkdir -p "$2/sys"
        mount -t sysfs sysfs "$2/sys"
        # subiquity logs to the journal: a journald of this namespace,
        # answering before the installer starts (on a loaded machine it
        # takes longer than the second the dry-run tool gives its own).
        mount -t tmpfs tmpfs /run/systemd
        mkdir -p /run/systemd/journal
        /lib/systemd/systemd-journald >/dev/null 2>&1 &
        n=0
        until systemd-cat true 2>/dev/null; do
            n=$((n + 1))
            [ "$n" -lt 60 ] || { echo "journald did not start" >&2; exit 1; }
            sleep 1
        done
        mkdir -p /run/microseed/stick
        mount -t tmpfs tmpfs /run/microseed
        mkdir -p /run/microseed/stick
        mount --bind "$2/stick" /run/microseed/stick
        exec timeout "$4" "$3" "$2/stick/user-data" "$2/out"
    ' stick-dryrun "$nic_mac" "$wd" "$tool" "$limit" >"$wd/tool.log" 2>&1 || true
    # Everything in that PID namespace ended with it; the installer's log
    # of a refused run is still in its working tree.
    cp "$live/subiquity-server-debug.log" "$wd/server.log" 2>/dev/null || true
    echo "== $name (subiquity $REV, NIC $nic_mac, disk $disk${fs:+ holding $fs})"
    local t=$wd/out/$REV/dot-subiquity
    [ "$REV" = 22.07.2 ] || t=$wd/target
    local storage
    storage=$(grep -l '"ptable"\|ptable:' -r "$wd/out/$REV/dot-subiquity/var/log/installer" 2>/dev/null | head -n 1 || true)
    case $name in
    known*)
        if [ "$(cat "$t/etc/hostname" 2>/dev/null)" = worker-1 ] &&
            grep -q "$mac" "$t/etc/netplan/00-installer-config.yaml" 2>/dev/null &&
            grep -q 'completed: yes' "$wd/tool.log"; then
            echo "  worker-1 installed: hostname worker-1, netplan matching $mac"
        else
            echo "  FAIL: worker-1 not installed"; fail=1
        fi
        ;;
    *)
        if ! grep -q 'subiquity/Early/run: FAIL' "$wd/server.log" ||
            grep -q 'subiquity/Filesystem/apply_autoinstall_config\|subiquity/Install/install' "$wd/server.log"; then
            echo "  FAIL: the installer went past its early commands"; fail=1
        else
            echo "  the installer stopped at its early commands"
        fi
        if [ -e "$t/etc/hostname" ] || [ -n "$storage" ] ||
            ! grep -q '^version: 1$' "$wd/out/$REV/autoinstall.yaml" ||
            grep -q '^storage:' "$wd/out/$REV/autoinstall.yaml"; then
            echo "  FAIL: something was installed"; fail=1
        else
            echo "  nothing installed; the selector stayed the installer's autoinstall"
        fi
        if ls "$wd/stick/microseed/reports/"*.select.log >/dev/null 2>&1; then
            echo "  on the stick: $(cat "$wd/stick/microseed/reports/"*.select.log)"
        else
            echo "  FAIL: no verdict on the stick"; fail=1
        fi
        ;;
    esac
    [ "$fail" = 0 ] || { echo "---- tool output ----"; cat "$wd/tool.log"; }
}

run known "$mac" /dev/sda
REV=20.04.3 STICK=$stick2004 run known-2004 "$mac" /dev/sda
run unknown 52:54:00:99:99:99 /dev/sda
# discover.sh's report, with select.sh's reason appended. A veth is no
# physical card to discover.sh (no /sys/class/net/X/device), so the report
# is named no-mac.txt here; on hardware it is the card's MAC.
reports=("$work/unknown/stick/microseed/reports/"*.txt)
if [ "${#reports[@]}" = 1 ] && [ -f "${reports[0]}" ] &&
    grep -q '^microseed-report 1$' "${reports[0]}" &&
    grep -q "^reason this machine is not in the stick's cluster file" "${reports[0]}"; then
    echo "  hardware report on the stick: ${reports[0]##*/}, with the reason"
else
    echo "  FAIL: no hardware report (with the reason) for the unknown machine"; fail=1
fi

# A disk holding this cluster's system: ext4 on a loop device with the id.
mkdir -p "$work/sys/etc/microseed"
mcopy -n -i "$stick" "::microseed/cluster-id" "$work/sys/etc/microseed/cluster-id"
truncate -s 16M "$work/held.img"
mkfs.ext4 -q -F -d "$work/sys" "$work/held.img"
loop=$(losetup --find --show --read-only "$work/held.img")
run held "$mac" "$loop" "$loop"

if [ "$fail" = 0 ]; then echo "stick dry-run: PASS"; else echo "stick dry-run: FAIL"; exit 1; fi
