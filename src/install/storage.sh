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
src=$(findmnt -n -o SOURCE "$t")
if [ "$src" != /dev/mapper/ubuntu--vg-ubuntu--lv ]; then
    echo "microseed: $t is on $src, not on $lv: cannot size it" >&2
    exit 1
fi
free() { vgs --noheadings --units b --nosuffix -o vg_free "$vg" | tr -d ' '; }
case "$1" in
root)
    if [ "$(free)" -gt 0 ]; then
        lvextend --resizefs -l +100%FREE "$lv"
    fi
    ;;
data)
    size=$(lvs --noheadings --units b --nosuffix -o lv_size "$lv" | tr -d ' ')
    if [ "$size" -lt $(($3 * 1073741824)) ]; then
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
