# shellcheck shell=bash
# Build recipe for the trixie cloud-init chroot ($(ms_cache_dir)/trixie-cloudinit).
# The cache is rebuilt when this file's hash changes: keep everything that
# shapes the chroot in here. Sourced by scripts/cloud-init-chroot.sh.

MS_TRIXIE_PACKAGES=(
    cloud-init netplan.io ufw iptables chrony fusefat iproute2 kmod
    openssh-client openssh-server nfs-kernel-server python3-yaml
    systemd locales sudo procps hostname passwd tzdata
)

# ms_build_trixie_cloudinit DEST: debootstrap + packages (reused when the
# package list and mirror are unchanged: DEST.base-sha256), then configure.
ms_build_trixie_cloudinit() {
    local dest="$1" mirror key
    mirror="$(ms_mirror)"
    key="$(printf 'trixie minbase %s %s\n' "$mirror" "${MS_TRIXIE_PACKAGES[*]}" | sha256sum | cut -d' ' -f1)"
    if [[ -d "$dest" && "$(cat "$dest.base-sha256" 2>/dev/null)" == "$key" ]]; then
        ms_log "reusing the installed packages in $dest; reconfiguring"
    else
        rm -rf "$dest" "$dest.base-sha256"
        mkdir -p "$dest"
        ms_trixie_base "$dest" "$mirror"
        echo "$key" >"$dest.base-sha256"
    fi
    ms_trixie_configure "$dest"
}

ms_trixie_base() {
    local dest="$1" mirror="$2"
    ms_log "debootstrap --variant=minbase trixie from $mirror (about 2 min)"
    debootstrap --variant=minbase trixie "$dest" "$mirror" >"$dest.debootstrap.log" 2>&1 ||
        { tail -n 30 "$dest.debootstrap.log" >&2; ms_die "debootstrap trixie failed (log: $dest.debootstrap.log)"; }

    printf '#!/bin/sh\n# microseed tests: never start services in this chroot\nexit 101\n' >"$dest/usr/sbin/policy-rc.d"
    chmod 755 "$dest/usr/sbin/policy-rc.d"
    ms_log "installing ${MS_TRIXIE_PACKAGES[*]}"
    # shellcheck disable=SC2016 # expanded by the inner bash
    unshare --mount --fork -- bash -euo pipefail -c '
        dest="$1"; shift
        mount -t proc proc "$dest/proc"
        mount --rbind /dev "$dest/dev"
        mount -t tmpfs tmpfs "$dest/run"
        mount -t tmpfs tmpfs "$dest/tmp"
        export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
        chroot "$dest" apt-get update -qq
        chroot "$dest" apt-get install -y -qq --no-install-recommends "$@"
        chroot "$dest" apt-get clean
    ' ms-build "$dest" "${MS_TRIXIE_PACKAGES[@]}" >"$dest.apt.log" 2>&1 ||
        { tail -n 30 "$dest.apt.log" >&2; ms_die "package install in the trixie chroot failed (log: $dest.apt.log)"; }
}

# Idempotent configuration of an installed chroot.
ms_trixie_configure() {
    local dest="$1"
    printf '#!/bin/sh\n# microseed tests: never start services in this chroot\nexit 101\n' >"$dest/usr/sbin/policy-rc.d"
    chmod 755 "$dest/usr/sbin/policy-rc.d"

    sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' "$dest/etc/locale.gen"
    grep -q '^en_US.UTF-8 UTF-8' "$dest/etc/locale.gen" || echo 'en_US.UTF-8 UTF-8' >>"$dest/etc/locale.gen"
    chroot "$dest" locale-gen >/dev/null

    cat >"$dest/etc/cloud/cloud.cfg.d/90-microseed-test.cfg" <<'EOF'
# microseed tests: NoCloud only, behave like Ubuntu (netplan renderer).
datasource_list: [NoCloud, None]
locale: C.UTF-8
system_info:
  distro: ubuntu
  network:
    renderers: [netplan, eni]
EOF

    # This host kernel has no vfat: serve FAT seeds read-only through FUSE.
    cat >"$dest/usr/sbin/mount.vfat" <<'EOF'
#!/bin/sh
exec fusefat -o ro "$1" "$2"
EOF
    chmod 755 "$dest/usr/sbin/mount.vfat"

    # apt's caches in the base: apt-cache/apt-get inside apply then neither
    # rebuild them (seconds) nor copy 90 MB into the overlay.
    chroot "$dest" apt-cache gencaches >/dev/null

    # Leftover state that must not leak into runs.
    rm -rf "$dest/var/lib/cloud/"* "$dest/var/log/cloud-init"*.log
    : >"$dest/etc/machine-id"
    echo "microseed-test" >"$dest/etc/hostname"
}
