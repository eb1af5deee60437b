# microseed discovery: run by the cluster stick's select.sh on a machine that
# matches no machine of the cluster. Prints what this machine has (network
# cards, disks, DMI) for the console and saves it as one report, named after
# the first permanent MAC, for `microseed discover` (docs/discover.md).
#   sh discover.sh DIR      DIR: where the report goes (the stick's
#                           microseed/reports)
# Reads sysfs, udev's database, ethtool; writes nothing outside DIR (a card
# that is down is brought up for a few seconds to see its cable, then down
# again). Always exits 0: a fact it cannot read is left empty, not fatal.
# MICROSEED_SYSFS (tests only) reads another tree instead of /sys.
set -u
export LC_ALL=C
dir=${1:-}
sys=${MICROSEED_SYSFS:-/sys}
if [ -z "$dir" ]; then
    echo "microseed discover.sh: usage: sh discover.sh DIR" >&2
    exit 0
fi

# One line, no control characters, no surrounding blanks: every value goes in
# the report as the rest of its line, so a newline in a DMI string or a disk
# model must not start a line of its own.
clean() {
    printf '%s' "$1" | tr '\000-\037\177' '[ *]' | sed 's/^ *//; s/ *$//'
}

# The cleaned content of a sysfs file, or nothing.
attr() {
    if [ -r "$1" ] && [ -f "$1" ]; then
        clean "$(cat "$1" 2>/dev/null)"
    fi
}

# The last path element of the link $1 points to, or nothing.
link_name() {
    if [ -L "$1" ]; then
        l=$(readlink "$1" 2>/dev/null) || l=
        printf '%s' "${l##*/}"
    fi
}

tmp_report=
report=
lines=
# KEY VALUE, the report's only line form.
emit() {
    lines="${lines}$1 $(clean "$2")
"
}

# udev's properties of /dev/$1 as prop_KEY variables (only the keys read
# below); nothing without udevadm or its database.
udev_props() {
    prop_ID_SERIAL='' prop_ID_SERIAL_SHORT='' prop_ID_MODEL='' prop_ID_BUS=''
    prop_ID_WWN='' prop_DEVLINKS='' prop_ID_FS_TYPE='' prop_ID_FS_LABEL=''
    command -v udevadm >/dev/null 2>&1 || return 0
    out=$(udevadm info --query=property --name="/dev/$1" 2>/dev/null) || return 0
    while IFS= read -r line; do
        v=${line#*=}
        case $line in
        ID_SERIAL=*) prop_ID_SERIAL=$v ;;
        ID_SERIAL_SHORT=*) prop_ID_SERIAL_SHORT=$v ;;
        ID_MODEL=*) prop_ID_MODEL=$v ;;
        ID_BUS=*) prop_ID_BUS=$v ;;
        ID_WWN=*) prop_ID_WWN=$v ;;
        DEVLINKS=*) prop_DEVLINKS=$v ;;
        ID_FS_TYPE=*) prop_ID_FS_TYPE=$v ;;
        ID_FS_LABEL=*) prop_ID_FS_LABEL=$v ;;
        esac
    done <<EOF
$out
EOF
}

# Bytes as "512.1 GB" (decimal, as disk labels print them).
human() {
    tenths=$(($1 / 100000000))
    if [ "$tenths" -ge 10000 ]; then
        printf '%d.%d TB' $((tenths / 10000)) $((tenths / 1000 % 10))
    else
        printf '%d.%d GB' $((tenths / 10)) $((tenths % 10))
    fi
}

# The permanent (burnt-in) address of NIC $1 and how it was learnt, as
# "MAC SOURCE"; the current address is the permanent one only while the
# kernel says so (addr_assign_type 0).
permanent_mac() {
    if command -v ethtool >/dev/null 2>&1; then
        pm=$(ethtool -P "$1" 2>/dev/null | sed -n 's/^Permanent address: *//p')
        case $pm in
        ?*:?*) [ "$pm" != 00:00:00:00:00:00 ] && printf '%s ethtool' "$pm" && return 0 ;;
        esac
    fi
    if [ "$(attr "$sys/class/net/$1/addr_assign_type")" = 0 ]; then
        pm=$(attr "$sys/class/net/$1/address")
        [ -n "$pm" ] && printf '%s addr_assign_type' "$pm" && return 0
    fi
    # iproute2 5.9+ shows the permanent address when it differs.
    pm=$(ip -d link show dev "$1" 2>/dev/null | sed -n 's/.* permaddr \([0-9a-fA-F:]*\).*/\1/p')
    [ -n "$pm" ] && printf '%s ip' "$pm"
    return 0
}

# The whole disk holding the block device $1 (/dev/sdb2 -> sdb), from sysfs.
disk_of() {
    dn=${1##*/}
    if [ -e "$sys/class/block/$dn/partition" ]; then
        dp=$(readlink -f "$sys/class/block/$dn" 2>/dev/null) || dp=
        dp=${dp%/*}
        printf '%s' "${dp##*/}"
    else
        printf '%s' "$dn"
    fi
}

# The stick: the disk holding DIR's filesystem (select.sh mounts the CIDATA
# partition there) and any disk with a partition labelled CIDATA.
stick=
mkdir -p "$dir" 2>/dev/null
# --nofsroot: a bind mount shows as /dev/sdb3, not /dev/sdb3[/dir].
src=$(findmnt -n --nofsroot -o SOURCE --target "$dir" 2>/dev/null) || src=
case $src in
/dev/*) stick=" $(disk_of "$src") " ;;
esac

summary=
say() {
    summary="${summary}$1
"
}

emit microseed-report 1
emit time "$(date -u +%Y-%m-%dT%H:%M:%SZ 2>/dev/null)"
if [ -d "$sys/firmware/efi" ]; then emit firmware uefi; else emit firmware bios; fi
dmi=$sys/class/dmi/id
vendor=$(attr "$dmi/sys_vendor")
product=$(attr "$dmi/product_name")
version=$(attr "$dmi/product_version")
serial=$(attr "$dmi/product_serial")
emit dmi.sys_vendor "$vendor"
emit dmi.product_name "$product"
emit dmi.product_version "$version"
emit dmi.product_serial "$serial"
emit dmi.board_vendor "$(attr "$dmi/board_vendor")"
emit dmi.board_name "$(attr "$dmi/board_name")"
emit dmi.board_serial "$(attr "$dmi/board_serial")"
say "System: ${vendor:-unknown vendor} ${product:-unknown product}${version:+ ($version)}, serial ${serial:-unknown}"

# A card the installer left down says nothing about its cable: bring it up
# (no address, no configuration) for a few seconds to read its carrier, then
# down again. Not on a test tree: its names are not this machine's cards.
raised=
if [ -z "${MICROSEED_SYSFS:-}" ] && command -v ip >/dev/null 2>&1; then
    for p in "$sys"/class/net/*; do
        [ -e "$p/device" ] || continue
        case $(attr "$p/flags") in
        0x*) [ $(($(attr "$p/flags") & 1)) -eq 0 ] || continue ;;
        *) continue ;;
        esac
        ip link set dev "${p##*/}" up 2>/dev/null && raised="$raised ${p##*/}"
    done
    # Autonegotiation takes up to a few seconds.
    tries=0
    while [ -n "$raised" ] && [ "$tries" -lt 8 ]; do
        waiting=0
        for n in $raised; do
            [ "$(attr "$sys/class/net/$n/carrier")" = 1 ] || waiting=1
        done
        [ "$waiting" = 1 ] || break
        sleep 1
        tries=$((tries + 1))
    done
fi

first_mac=
first_any=
say "Network cards (name, permanent MAC, link):"
nics=0
for p in "$sys"/class/net/*; do
    [ -e "$p" ] || continue
    n=${p##*/}
    # No device: lo, veth, bridges, bonds, tunnels, dummies.
    [ -e "$p/device" ] || continue
    nics=$((nics + 1))
    addr=$(attr "$p/address")
    perm=$(permanent_mac "$n")
    perm_mac=${perm% *}
    perm_from=${perm#* }
    [ -n "$perm" ] || perm_from=
    state=$(attr "$p/operstate")
    carrier=$(attr "$p/carrier")
    speed=$(attr "$p/speed")
    driver=$(link_name "$p/device/driver")
    bus=$(link_name "$p/device/subsystem")
    wireless=0
    if [ -d "$p/wireless" ] || [ -e "$p/phy80211" ]; then wireless=1; fi
    emit nic "$n"
    emit nic.address "$addr"
    emit nic.permanent "$perm_mac"
    emit nic.permanent_from "$perm_from"
    emit nic.operstate "$state"
    emit nic.carrier "$carrier"
    emit nic.speed "$speed"
    emit nic.driver "$driver"
    emit nic.bus "$bus"
    emit nic.wireless "$wireless"
    # The report's name: the first wired card's permanent address (names
    # sort the same at every boot), else any card's.
    if [ -n "$perm_mac" ]; then
        [ -n "$first_any" ] || first_any=$perm_mac
        [ "$wireless" = 1 ] || [ -n "$first_mac" ] || first_mac=$perm_mac
    fi
    link="no link"
    if [ "$carrier" = 1 ]; then
        link="link up"
        case $speed in
        '' | -*) ;;
        *) link="$link, $speed Mb/s" ;;
        esac
    fi
    [ "$wireless" = 1 ] && link="$link, wireless"
    case " $raised " in *" $n "*) link="$link (was down)" ;; esac
    say "  $n  ${perm_mac:-permanent MAC unknown (now ${addr:-none})}  $link${driver:+  ($driver${bus:+, $bus})}"
done
[ "$nics" -gt 0 ] || say "  none found"
for n in $raised; do
    ip link set dev "$n" down 2>/dev/null
done

say "Disks (the stick left out):"
disks=0
skipped=
for p in "$sys"/block/*; do
    [ -e "$p" ] || continue
    n=${p##*/}
    case $n in
    loop* | ram* | zram* | sr* | fd* | nbd* | md* | dm-* | *boot[0-9] | *rpmb) continue ;;
    esac
    case $stick in *" $n "*)
        skipped="$skipped $n"
        continue
        ;;
    esac
    # A partition labelled CIDATA marks the stick too (or a seed stick).
    is_stick=0
    parts=
    for q in "$p/$n"*; do
        [ -e "$q/partition" ] || continue
        parts="$parts ${q##*/}"
        udev_props "${q##*/}"
        case $prop_ID_FS_LABEL in CIDATA | cidata) is_stick=1 ;; esac
    done
    # A filesystem on the whole disk, without a partition table.
    udev_props "$n"
    case $prop_ID_FS_LABEL in CIDATA | cidata) is_stick=1 ;; esac
    if [ "$is_stick" = 1 ]; then
        skipped="$skipped $n"
        continue
    fi
    sectors=$(attr "$p/size")
    case $sectors in '' | *[!0-9]*) sectors=0 ;; esac
    # An empty card reader, a CD drive without a disc.
    [ "$sectors" -gt 0 ] || continue
    disks=$((disks + 1))
    size=$((sectors * 512))
    model=$(attr "$p/device/model")
    [ -n "$model" ] || model=$prop_ID_MODEL
    removable=$(attr "$p/removable")
    dev=$(readlink -f "$p/device" 2>/dev/null) || dev=
    case $n:$dev in
    *:*/usb*) transport=usb ;;
    nvme*) transport=nvme ;;
    mmcblk*) transport=mmc ;;
    *) transport=$prop_ID_BUS ;;
    esac
    emit disk "$n"
    emit disk.size "$size"
    emit disk.removable "$removable"
    emit disk.rotational "$(attr "$p/queue/rotational")"
    emit disk.transport "$transport"
    emit disk.model "$model"
    emit disk.vendor "$(attr "$p/device/vendor")"
    id_serial=$prop_ID_SERIAL
    emit disk.id_serial "$id_serial"
    emit disk.id_serial_short "$prop_ID_SERIAL_SHORT"
    emit disk.wwn "$prop_ID_WWN"
    ids=
    # Split on blanks only: a link name is never a glob.
    set -f
    for l in $prop_DEVLINKS; do
        case $l in /dev/disk/by-id/*)
            emit disk.by_id "$l"
            ids="$ids
      $l"
            ;;
        esac
    done
    set +f
    for q in $parts; do
        udev_props "$q"
        emit part "$q"
        s=$(attr "$p/$q/size")
        case $s in '' | *[!0-9]*) s=0 ;; esac
        emit part.size $((s * 512))
        emit part.fstype "$prop_ID_FS_TYPE"
        emit part.label "$prop_ID_FS_LABEL"
    done
    flags=
    [ "$removable" = 1 ] && flags=", removable"
    [ "$transport" = usb ] && flags="$flags, USB"
    say "  $n  $(human "$size")  ${model:-unknown model}$flags"
    say "      ID_SERIAL ${id_serial:-unknown}${ids}"
done
[ "$disks" -gt 0 ] || say "  none found"
for n in $skipped; do
    emit skipped "$n the stick"
done

mac=${first_mac:-$first_any}
name=$(printf '%s' "${mac:-no-mac}" | tr 'A-F:' 'a-f-')
printf '%s' "$summary"
if mkdir -p "$dir" 2>/dev/null; then
    report=$dir/$name.txt
    tmp_report=$dir/.$name.tmp
    # Written whole, then renamed: a stick pulled mid-write leaves the old
    # report or none, never half of one.
    if { printf '# microseed discovery report: KEY VALUE lines, docs/discover.md\n%s' "$lines" >"$tmp_report"; } 2>/dev/null &&
        mv -f "$tmp_report" "$report" 2>/dev/null; then
        sync 2>/dev/null
        echo "Report saved: $report"
        echo "Next: on your computer, \`microseed discover\` on this stick (docs/discover.md)."
    else
        rm -f "$tmp_report" 2>/dev/null
        echo "microseed: could not write $report (the report is shown above only)" >&2
    fi
else
    echo "microseed: cannot create $dir (the report is shown above only)" >&2
fi
exit 0
