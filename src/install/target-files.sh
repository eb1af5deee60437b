# microseed late-command: writes the installed system's host name, netplan and
# cloud-init datasource setting from the seed, because not every installer
# revision carries them (README, "Install"). Every value arrives as an
# argument, never as shell text:
#   $1 host name   $2 netplan YAML   $3 cloud-init drop-in (YAML)
# The installer mounts the new system at /target; subiquity 22.07+ also says
# where in TARGET_MOUNT_POINT (a directory of its own in a dry run).
set -eu
t=${TARGET_MOUNT_POINT:-/target}
if [ ! -d "$t/etc" ]; then
    echo "microseed: no installed system at $t" >&2
    exit 1
fi
umask 022
printf '%s\n' "$1" > "$t/etc/hostname"
mkdir -p "$t/etc/netplan" "$t/etc/cloud/cloud.cfg.d"
# Same name as the installer's own file, so this one replaces it.
umask 077
printf '%s' "$2" > "$t/etc/netplan/00-installer-config.yaml"
chmod 600 "$t/etc/netplan/00-installer-config.yaml"
umask 022
printf '%s' "$3" > "$t/etc/cloud/cloud.cfg.d/90-microseed-datasource.cfg"
chmod 644 "$t/etc/cloud/cloud.cfg.d/90-microseed-datasource.cfg"
echo "microseed: wrote host name, netplan and datasource setting to $t"
