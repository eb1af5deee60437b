# microseed late-command: writes the installed system's host name, netplan and
# cloud-init datasource and network settings from the seed, because not every
# installer revision carries them (docs/installer.md, "Install"). Every value
# arrives as an argument, never as shell text:
#   $1 host name   $2 netplan YAML   $3 cloud-init datasource drop-in (YAML)
#   $4 cloud-init network drop-in (YAML: network rendering disabled)
#   $5 the cluster's id, kept in /etc/microseed/cluster-id: the cluster
#      stick refuses to install over a disk holding it (docs/stick.md)
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
ours=$t/etc/netplan/00-installer-config.yaml
# netplan merges every file in /etc/netplan, so the seed's network must be the
# only one there. Others an installed system may hold: subiquity's
# 00-installer-config-wifi.yaml (22.07.2 and later, with Wi-Fi) and
# cloud-init's rendering, 50-cloud-init.yaml.
for f in "$t"/etc/netplan/*.yaml "$t"/etc/netplan/*.yml; do
    if [ -e "$f" ] && [ "$f" != "$ours" ]; then
        rm -f "$f"
        echo "microseed: removed $f (netplan would merge it with the seed's network)"
    fi
done
# Network handed to cloud-init instead of netplan: subiquity 23.10 to 24.04.x
# write 90-installer-network.cfg when the live cloud-init has
# NETPLAN_CONFIG_ROOT_READ_ONLY; curtin writes 50-curtin-networking.cfg when
# its config has a `network` key (subiquity's never has). Either would become
# a second netplan, 50-cloud-init.yaml, at first boot.
for f in 90-installer-network.cfg 50-curtin-networking.cfg; do
    if [ -e "$t/etc/cloud/cloud.cfg.d/$f" ]; then
        rm -f "$t/etc/cloud/cloud.cfg.d/$f"
        echo "microseed: removed $t/etc/cloud/cloud.cfg.d/$f (cloud-init would render it over the seed's network)"
    fi
done
# Same name as the installer's own file, so this one replaces it.
umask 077
printf '%s' "$2" > "$ours"
chmod 600 "$ours"
umask 022
printf '%s' "$3" > "$t/etc/cloud/cloud.cfg.d/90-microseed-datasource.cfg"
# Sorted after every installer drop-in (99-installer.cfg included): read last.
printf '%s' "$4" > "$t/etc/cloud/cloud.cfg.d/99-microseed-network.cfg"
chmod 644 "$t/etc/cloud/cloud.cfg.d/90-microseed-datasource.cfg" \
    "$t/etc/cloud/cloud.cfg.d/99-microseed-network.cfg"
mkdir -p "$t/etc/microseed"
printf '%s\n' "$5" > "$t/etc/microseed/cluster-id"
chmod 644 "$t/etc/microseed/cluster-id"
echo "microseed: wrote host name, netplan, datasource, network settings and cluster id to $t"
