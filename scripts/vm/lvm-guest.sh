#!/bin/sh
# PID 1 of the LVM test VM (scripts/lvm-vm.sh): a Debian kernel, which has
# device-mapper (the test host's kernel has none), runs the storage
# late-command exactly as a seed carries it against real LVM on a virtio disk,
# the way subiquity lays it out, and reports what it did on the second serial
# port. The payload disk (/dev/vdc) holds this script, the LVM userland and
# one directory per case:
#   pv      PV size in GiB (the volume group's size)
#   lv      root LV size in GiB          name  root LV name (ubuntu-lv)
#   script  the late-command's script    args  its arguments, one per line
#   via_dm  (present) mount the target as /dev/dm-N, not by its LVM name
# Report lines: CASE.KEY=VALUE; "END" when every case ran.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
p=/mnt/payload
out=/dev/ttyS1
disk=/dev/vdb

say() { printf '%s\n' "$*" >"$out"; }
bye() {
    sync
    echo o >/proc/sysrq-trigger
    sleep 30
}

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /run || mount -t tmpfs run /run
mount -o remount,rw / 2>/dev/null
# The LVM userland of the host (Debian 12, like this guest) over the guest's
# root: a throwaway overlay of the image.
cp -a "$p/rootfs/." /
if ! modprobe dm_mod; then
    say "FATAL=modprobe dm_mod failed"
    bye
fi
# LVM isolated to the test disk: no udev here (LVM makes its own /dev
# nodes), no archives or backups.
LVM_SYSTEM_DIR=$p/lvm
export LVM_SYSTEM_DIR
mkdir -p /run/lock/lvm /target
say "KERNEL=$(uname -r)"
say "DM=$(dmsetup version 2>&1 | tr '\n' ' ')"

for c in "$p"/cases/*/; do
    c=${c%/}
    n=$(basename "$c")
    {
    wipefs -a -q "$disk" &&
    pvcreate -q -y --setphysicalvolumesize "$(cat "$c/pv")G" "$disk" >/dev/null &&
        vgcreate -q ubuntu-vg "$disk" >/dev/null &&
        lvcreate -q -y -L "$(cat "$c/lv")G" -n "$(cat "$c/name")" ubuntu-vg >/dev/null &&
        mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 -J size=16 "/dev/ubuntu-vg/$(cat "$c/name")" &&
        dev=/dev/ubuntu-vg/$(cat "$c/name") &&
        if [ -f "$c/via_dm" ]; then
            # The kernel's own name for it, as another installer might mount it.
            dev=/dev/dm-$(dmsetup info -c --noheadings -o minor "ubuntu--vg-$(sed 's/-/--/g' "$c/name")")
        fi &&
        # noinit_itable: no background zeroing of inode tables (gigabytes
        # under software emulation); what is tested is the sizing.
        mount -o noinit_itable "$dev" /target &&
        mkdir -p /target/etc &&
        printf '/dev/mapper/ubuntu--vg-%s / ext4 defaults 0 1\n' "$(sed 's/-/--/g' "$c/name")" >/target/etc/fstab
    } >/tmp/setup.log 2>&1
    say "$n.setup=$?"
    while IFS= read -r l; do say "$n.setup_log=$l"; done </tmp/setup.log
    # The late-command: sh -c SCRIPT NAME ARG..., as subiquity runs it.
    set --
    while IFS= read -r a; do set -- "$@" "$a"; done <"$c/args"
    TARGET_MOUNT_POINT=/target sh -c "$(cat "$c/script")" "$@" >/tmp/run.log 2>&1
    say "$n.rc=$?"
    while IFS= read -r l; do say "$n.out=$l"; done </tmp/run.log
    lvs --noheadings --units b --nosuffix -o lv_name,lv_size ubuntu-vg |
        while read -r lv size; do say "$n.lv.$lv=$size"; done
    say "$n.vg_size=$(vgs --noheadings --units b --nosuffix -o vg_size ubuntu-vg | tr -d ' ')"
    say "$n.vg_free=$(vgs --noheadings --units b --nosuffix -o vg_free ubuntu-vg | tr -d ' ')"
    say "$n.root_fs=$(df -B1 --output=size /target | tail -n 1 | tr -d ' ')"
    say "$n.fstab_last=$(tail -n 1 /target/etc/fstab)"
    if [ -e /dev/ubuntu-vg/data ]; then
        say "$n.data_blkid=$(blkid -c /dev/null -o export /dev/ubuntu-vg/data | grep -E '^(LABEL|TYPE)=' | sort | tr '\n' ' ')"
        mp=$3
        [ -d "/target$mp" ] && say "$n.data_dir_in_target=yes"
        mkdir -p "$mp"
        findmnt --verify --tab-file /target/etc/fstab >/tmp/verify.log 2>&1
        say "$n.verify_rc=$?"
        while IFS= read -r l; do say "$n.verify=$l"; done </tmp/verify.log
        # Mounted from the target's fstab, as the installed system will.
        mount -T /target/etc/fstab -o noinit_itable "$mp"
        say "$n.data_mount=$(findmnt -n -b -o SOURCE,FSTYPE,SIZE "$mp" | tr -s ' ')"
        umount "$mp"
    fi
    umount /target
    # The filesystem is sound after its online growth.
    e2fsck -f -n "/dev/ubuntu-vg/$(cat "$c/name")" >/tmp/fsck.log 2>&1
    say "$n.fsck_rc=$?"
    vgchange -q -a n ubuntu-vg >/dev/null
    vgremove -q -ff -y ubuntu-vg >/dev/null
    pvremove -q -ff -y "$disk" >/dev/null
done
say END
bye
