# microseed late-command: gives the role the whole disk. Subiquity's `lvm`
# layout makes the root volume 4 GiB (20.04.x) or 10 to 100 GiB (later
# revisions); this grows it, or adds the NFS data volume.
#   $1 `root` (root takes every free extent) or `data` (root grows to $3 GiB
#      if smaller, a volume `data` takes the rest and is mounted at $2)
#   $2 the data volume's mount point   $3 root size in GiB with a data volume
set -eu
t=${TARGET_MOUNT_POINT:-/target}
if ! mountpoint -q "$t"; then
    # Only a dry run (subiquity --dry-run) has an unmounted target.
    echo "microseed: $t is not a mounted target: disk layout left as planned"
    exit 0
fi
vg=ubuntu-vg
lv=$vg/ubuntu-lv
lvdev=/dev/mapper/ubuntu--vg-ubuntu--lv
src=$(findmnt -n -o SOURCE "$t")
# The same device whatever name the target was mounted by (/dev/mapper/...,
# /dev/ubuntu-vg/..., /dev/dm-N): compare device numbers.
if [ ! -b "$src" ] || [ ! -b "$lvdev" ] ||
    [ "$(stat -L -c %t:%T "$src")" != "$(stat -L -c %t:%T "$lvdev")" ]; then
    echo "microseed: $t is on $src, not on $lv: cannot size it" >&2
    exit 1
fi
bytes() { tr -d ' '; }
free() { vgs --noheadings --units b --nosuffix -o vg_free "$vg" | bytes; }
gib=1073741824
case "$1" in
root)
    if [ "$(free)" -gt 0 ]; then
        lvextend --resizefs -l +100%FREE "$lv"
    fi
    ;;
data)
    size=$(lvs --noheadings --units b --nosuffix -o lv_size "$lv" | bytes)
    want=$(($3 * gib))
    [ "$size" -gt "$want" ] && want=$size
    # Checked before anything changes: root at its size plus a data volume
    # worth having (1 GiB at least) must fit, or the disk is too small.
    have=$((size + $(free)))
    if [ "$have" -lt $((want + gib)) ]; then
        echo "microseed: the NFS data volume needs at least $(((want + gib + gib - 1) / gib)) GiB in $vg (root $(((want + gib - 1) / gib)) GiB + data at least 1 GiB), but $vg has $((have / gib)) GiB: use a larger disk, or nfs.data_volume: false (the export then lives on root)" >&2
        exit 1
    fi
    if [ "$size" -lt "$want" ]; then
        lvextend --resizefs -L "$3G" "$lv"
    fi
    lvcreate -y -n data -l 100%FREE "$vg"
    mkfs.ext4 -q -L data "/dev/$vg/data"
    mkdir -p "$t$2"
    printf '/dev/mapper/ubuntu--vg-data %s ext4 defaults 0 2\n' "$2" >> "$t/etc/fstab"
    ;;
*)
    echo "microseed: unknown storage mode $1" >&2
    exit 1
    ;;
esac
vgs "$vg"
lvs "$vg"
