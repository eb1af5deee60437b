# microseed: the cluster stick's selector (docs/stick.md). The installer runs
# it as its only early command, from the stick's CIDATA partition mounted
# read-write. It picks this machine's seed and writes that machine's
# autoinstall document over the installer's, which subiquity reads again
# after the early commands; or it refuses, says why on the console, and
# exits non-zero, which stops subiquity before it writes to any disk.
#
# Every fact about a machine comes from the stick's
# microseed/machines/NAME/select.env, whose values microseed quoted; this
# script never evaluates anything else read from the stick or the machine.
#
# Tests point these at a fake tree; a live installer sets none of them:
#   MICROSEED_AUTOINSTALL (/autoinstall.yaml)  MICROSEED_CMDLINE (/proc/cmdline)
#   MICROSEED_SYSFS (/sys)  MICROSEED_CONSOLE (/dev/console)
#   MICROSEED_PROBE (/run/microseed/probe: where disks are mounted read-only)
set -u
here=$(cd "$(dirname "$0")" && pwd)
autoinstall=${MICROSEED_AUTOINSTALL:-/autoinstall.yaml}
cmdline_file=${MICROSEED_CMDLINE:-/proc/cmdline}
sysfs=${MICROSEED_SYSFS:-/sys}
console=${MICROSEED_CONSOLE:-/dev/console}
probe=${MICROSEED_PROBE:-/run/microseed/probe}
reports=$here/reports
stick_id=$(cat "$here/cluster-id")

say() {
    printf 'microseed: %s\n' "$*"
    # The early command's own output may scroll away under the installer's
    # screen; the console keeps it.
    if [ -c "$console" ] || [ -f "$console" ]; then
        printf 'microseed: %s\n' "$*" >>"$console" 2>/dev/null || true
    fi
}

# ---- this machine's NICs ----

# Ethernet interfaces (ARPHRD_ETHER), by name.
nics() {
    for d in "$sysfs"/class/net/*; do
        [ -e "$d/type" ] || continue
        [ "$(cat "$d/type")" = 1 ] || continue
        printf '%s\n' "${d##*/}"
    done
}

# The permanent (burnt-in) address of NIC $1, lower-case. `ethtool -P` reads
# it from the driver (`not set`, or all zeros, where it has none); `ip -d link`
# shows `permaddr` only when it differs from the current address (bonding,
# a MACAddress= setting, macchanger). When neither names one, no permanent
# address differs from the current one, so /sys/class/net/NIC/address is it.
perm_mac() {
    p=$(ethtool -P "$1" 2>/dev/null | sed -n 's/^Permanent address: *//p')
    is_mac "$p" || p=
    if [ -z "$p" ]; then
        p=$(ip -d link show dev "$1" 2>/dev/null |
            sed -n 's/.* permaddr \([0-9A-Fa-f:]*\).*/\1/p' | head -n 1)
        is_mac "$p" || p=
    fi
    if [ -z "$p" ]; then
        p=$(cat "$sysfs/class/net/$1/address" 2>/dev/null)
        is_mac "$p" || p=
    fi
    printf '%s\n' "$p" | tr 'A-F' 'a-f'
}

# An Ethernet address, not all zeros.
is_mac() {
    case $1 in
    00:00:00:00:00:00) return 1 ;;
    [0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]) return 0 ;;
    *) return 1 ;;
    esac
}

macs=
first_mac=
for n in $(nics); do
    m=$(perm_mac "$n")
    [ -n "$m" ] || continue
    macs="$macs $m"
    [ -n "$first_mac" ] || first_mac=$m
done
# Where this machine's report and the selector's verdict go on the stick.
tag=$(printf '%s' "${first_mac:-no-mac}" | tr ':' '-')

refuse() {
    say "NOTHING INSTALLED: $*"
    say "no disk was written; remove the stick and power off, or pick a machine in the boot menu"
    mkdir -p "$reports" 2>/dev/null &&
        printf 'refused: %s\n' "$*" >"$reports/$tag.select.log" 2>/dev/null
    # discover.sh's report names the card it chose, which may not be the
    # first: the reason goes into whichever report this run left.
    if [ -n "${report:-}" ] && [ -f "$report" ]; then
        printf 'reason %s\n' "$*" | tr -d '\r' >>"$report" 2>/dev/null || true
    fi
    exit 1
}

# ---- which machine ----

# The value of the last `$1=VALUE` word of the kernel command line.
cmdline_word() {
    set -f
    # shellcheck disable=SC2013 # words, not lines
    for w in $(cat "$cmdline_file"); do
        case $w in
        "$1"=*) printf '%s\n' "${w#*=}" ;;
        esac
    done | tail -n 1
    set +f
}

load() {
    NAME='' MAC='' IP='' HOSTNAME='' DISK_SERIAL='' DISK_PATH='' DISK_SIZE='' DATA_DISK_SERIAL=''
    # shellcheck disable=SC1090 # written by microseed, every value quoted
    . "$here/machines/$1/select.env"
}

known() {
    case $1 in
    '' | .* | *[!A-Za-z0-9._-]*) return 1 ;;
    esac
    [ -f "$here/machines/$1/select.env" ] && [ -f "$here/machines/$1/autoinstall.yaml" ]
}

reinstall=$(cmdline_word microseed.reinstall)
asked=$(cmdline_word microseed.machine)
[ -n "$reinstall" ] && asked=$reinstall
if [ -n "$asked" ]; then
    known "$asked" || refuse "the boot menu asked for machine '$asked', which this stick does not hold"
    chosen=$asked
    how="chosen in the boot menu"
else
    chosen=
    for d in "$here"/machines/*/; do
        [ -d "$d" ] || continue
        n=${d%/}
        n=${n##*/}
        known "$n" || continue
        load "$n"
        [ -n "$MAC" ] || continue
        for m in $macs; do
            if [ "$m" = "$MAC" ]; then
                [ -z "$chosen" ] || refuse "this machine's NICs match both $chosen and $n"
                chosen=$n
            fi
        done
    done
    how="its MAC is one of this machine's NICs"
fi

if [ -z "$chosen" ]; then
    say "no machine of this stick has one of this machine's MACs (${macs# }): discovery only"
    mkdir -p "$reports"
    # discover.sh names its report after the card it chose: the report it
    # writes is the one new or changed (it records the time) on the stick.
    before=$(cksum "$reports"/*.txt 2>/dev/null)
    sh "$here/discover.sh" "$reports" | while IFS= read -r line; do say "$line"; done
    report=
    for f in "$reports"/*.txt; do
        [ -f "$f" ] || continue
        case $before in
        *"$(cksum "$f")"*) ;;
        *) report=$f ;;
        esac
    done
    refuse "this machine is not in the stick's cluster file; its hardware report is microseed/reports/${report##*/} on the stick"
fi

load "$chosen"
say "machine $NAME ($IP): $how"

# ---- guard 1: the disk selector matches exactly one disk ----

# The stick itself is never a candidate.
stick_disk=
src=$(findmnt -no SOURCE -T "$here" 2>/dev/null || true)
if [ -n "$src" ]; then
    stick_disk=$(lsblk -no PKNAME "$src" 2>/dev/null | head -n 1)
fi

# Whole disks as the installer sees them: NAME (kernel path) and bytes.
disks() {
    lsblk -dnpbo NAME,TYPE,SIZE 2>/dev/null | while read -r dev type size; do
        [ "$type" = disk ] || continue
        [ "${dev##*/}" != "$stick_disk" ] || continue
        case ${dev##*/} in zram*) continue ;; esac
        [ "${size:-0}" -gt 0 ] || continue
        printf '%s %s\n' "$dev" "$size"
    done
}

id_serial() {
    udevadm info --query=property --name="$1" 2>/dev/null | sed -n 's/^ID_SERIAL=//p'
}

all=$(disks)
matched=
count=0
if [ -n "$DISK_SERIAL" ]; then
    want="serial $DISK_SERIAL"
    while read -r dev size; do
        [ -n "$dev" ] || continue
        s=$(id_serial "$dev")
        # An unquoted case pattern is a glob, as subiquity's fnmatch.
        # shellcheck disable=SC2254
        case $s in
        '') ;;
        $DISK_SERIAL) matched="$matched $dev" count=$((count + 1)) ;;
        esac
    done <<EOF
$all
EOF
elif [ -n "$DISK_PATH" ]; then
    want="path $DISK_PATH"
    while read -r dev size; do
        [ -n "$dev" ] || continue
        # shellcheck disable=SC2254
        case $dev in
        $DISK_PATH) matched="$matched $dev" count=$((count + 1)) ;;
        esac
    done <<EOF
$all
EOF
else
    # DISK_SIZE is `largest`, subiquity's default match as well.
    want="the ${DISK_SIZE:-largest} disk"
    top=0
    while read -r dev size; do
        [ -n "$dev" ] && [ "$size" -gt "$top" ] && top=$size
    done <<EOF
$all
EOF
    while read -r dev size; do
        [ -n "$dev" ] || continue
        [ "$size" = "$top" ] && matched="$matched $dev" count=$((count + 1))
    done <<EOF
$all
EOF
fi
matched=${matched# }
if [ "$count" -ne 1 ]; then
    say "disks seen (the stick left out):"
    printf '%s\n' "$all" | while read -r dev size; do
        [ -n "$dev" ] && say "  $dev $size bytes, ID_SERIAL $(id_serial "$dev")"
    done
    if [ "$count" -eq 0 ]; then
        refuse "machine $NAME's disk ($want) matches no disk"
    fi
    refuse "machine $NAME's disk ($want) matches $count disks ($matched): it must name exactly one"
fi
disk=$matched
# The NFS data disk (a glob of its ID_SERIAL, as DISK_SERIAL) is never the
# one the installer erases.
if [ -n "$DATA_DISK_SERIAL" ]; then
    # shellcheck disable=SC2254
    case $(id_serial "$disk") in
    $DATA_DISK_SERIAL) refuse "machine $NAME's disk ($want) is $disk, its NFS data disk" ;;
    esac
fi

# ---- guard 2: the disk does not hold this cluster's system already ----

# Mounts each filesystem of $1 (partitions and logical volumes) read-only,
# without replaying journals, and says whether one holds this cluster's id.
holds_cluster() {
    if command -v vgchange >/dev/null 2>&1; then
        # Activation reads LVM metadata and writes nothing to the disk.
        vgchange -ay >/dev/null 2>&1 || true
    fi
    mkdir -p "$probe"
    lsblk -lnpo NAME,FSTYPE "$1" 2>/dev/null | while read -r dev fs; do
        case $fs in
        ext2 | ext3 | ext4) opts=ro,noload ;;
        xfs) opts=ro,norecovery ;;
        btrfs) opts=ro ;;
        *) continue ;;
        esac
        mount -o "$opts" "$dev" "$probe" 2>/dev/null || continue
        found=
        for f in "$probe/etc/microseed/cluster-id" "$probe/@/etc/microseed/cluster-id"; do
            if [ -f "$f" ] && [ "$(cat "$f")" = "$stick_id" ]; then
                found=$dev
            fi
        done
        umount "$probe" 2>/dev/null || umount -l "$probe" 2>/dev/null
        if [ -n "$found" ]; then
            printf '%s\n' "$found"
            return 0
        fi
    done
}

held=$(holds_cluster "$disk")
if [ -n "$held" ]; then
    if [ "$reinstall" = "$NAME" ]; then
        say "$disk already holds this cluster's system ($held): reinstalling, as the menu asked"
    else
        refuse "$disk already holds this cluster's system ($held): a stick left in at a reboot? To install again, boot the menu entry \"Reinstall $NAME ($IP): ERASES its disk\""
    fi
fi

# ---- hand over ----

tmp=$autoinstall.microseed.tmp
if ! cp "$here/machines/$NAME/autoinstall.yaml" "$tmp" || ! mv -f "$tmp" "$autoinstall"; then
    rm -f "$tmp"
    refuse "could not write $autoinstall"
fi
mkdir -p "$reports" 2>/dev/null &&
    printf 'installing %s (%s) on %s\n' "$NAME" "$IP" "$disk" >"$reports/$tag.select.log" 2>/dev/null
say "installing $NAME ($IP) on $disk: it will be erased"
exit 0
