# shellcheck shell=bash
# Build recipe for the bookworm VM ($(ms_cache_dir)/bookworm-vm): a Debian 12
# root with cloud-init (the guest) that also carries qemu-system-x86 (the
# host side: qemu runs from this chroot because Debian's qemu-system-x86
# conflicts with the host's qemu-utils backport).
# The cache is rebuilt when this file, the report script or the fakes change.
# Sourced by scripts/acceptance.sh.

MS_BOOKWORM_INCLUDE=systemd,systemd-sysv,udev,cloud-init,python3-cffi-backend,netplan.io,chrony,ufw,nfs-kernel-server,linux-image-amd64,ifupdown,iproute2,kmod,fusefat,qemu-system-x86,locales,openssh-server,sudo,openssl

ms_bookworm_recipe_files() {
    printf '%s\n' "$MS_SCRIPTS_DIR/recipes/recipe-bookworm-vm.sh" "$MS_SCRIPTS_DIR/vm/vm-report.sh" "$MS_SCRIPTS_DIR/vm/vm-fake-master.sh" \
        "$MS_SCRIPTS_DIR/vm/vm-status-watch.sh" \
        "$MS_SCRIPTS_DIR/vm/vm-cluster-agent.py" \
        "$MS_SCRIPTS_DIR/vm/vm-noble-ssh.sh" \
        "$MS_REPO_DIR/tests/fixtures/fakes/microk8s" "$MS_REPO_DIR/tests/fixtures/fakes/snap" \
        "$MS_REPO_DIR/tests/fixtures/fakes/apt-get"
}

# ms_install_fakes ROOT: fake snap/microk8s and the offline apt-get shim.
ms_install_fakes() {
    local root="$1" fakes="$MS_REPO_DIR/tests/fixtures/fakes"
    install -D -m 755 "$fakes/microk8s" "$root/snap/bin/microk8s"
    install -D -m 755 "$fakes/snap" "$root/usr/bin/snap"
    install -D -m 755 "$fakes/apt-get" "$root/usr/local/sbin/apt-get"
    mkdir -p "$root/usr/local/bin"
    ln -sfn /snap/bin/microk8s "$root/usr/local/bin/microk8s"
}

# ms_build_bookworm_vm DEST: DEST/root (chroot), DEST/root.img, DEST/vmlinuz,
# DEST/initrd.img. The debootstrap is reused when the package list and mirror
# are unchanged (DEST/root.base-sha256); the configuration is redone.
ms_build_bookworm_vm() {
    local dest="$1" r mirror key
    r="$dest/root"
    mirror="$(ms_mirror)"
    key="$(printf 'bookworm %s %s\n' "$mirror" "$MS_BOOKWORM_INCLUDE" | sha256sum | cut -d' ' -f1)"
    mkdir -p "$dest"
    if [[ -d "$r" && "$(cat "$dest/root.base-sha256" 2>/dev/null)" == "$key" ]]; then
        ms_log "reusing the bookworm packages in $r; reconfiguring"
    else
        rm -rf "$r" "$dest/root.base-sha256"
        ms_bookworm_base "$dest" "$mirror"
        echo "$key" >"$dest/root.base-sha256"
    fi
    ms_bookworm_configure "$dest"
}

ms_bookworm_base() {
    local dest="$1" mirror="$2" r="$1/root"
    ms_log "debootstrap bookworm (VM root + qemu) from $mirror (about 3 min)"
    debootstrap --include="$MS_BOOKWORM_INCLUDE" bookworm "$r" "$mirror" >"$dest/debootstrap.log" 2>&1 ||
        { tail -n 30 "$dest/debootstrap.log" >&2; ms_die "debootstrap bookworm failed (log: $dest/debootstrap.log)"; }

    printf '#!/bin/sh\n# microseed tests: no services while building\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    # shellcheck disable=SC2016 # expanded by the inner bash
    unshare --mount --fork -- bash -euo pipefail -c '
        r="$1"
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
        chroot "$r" apt-get install -f -y -qq
        sed -i "s/^# *\(en_US.UTF-8 UTF-8\)/\1/" "$r/etc/locale.gen"
        chroot "$r" locale-gen
        chroot "$r" apt-get clean
    ' ms-build "$r" >"$dest/configure.log" 2>&1 ||
        { tail -n 30 "$dest/configure.log" >&2; ms_die "configuring the bookworm chroot failed (log: $dest/configure.log)"; }
    rm -f "$r/usr/sbin/policy-rc.d"
}

ms_bookworm_configure() {
    local dest="$1" r="$1/root"
    ms_install_fakes "$r"
    # Failure injection for every boot: the stand-in microk8s refuses the
    # first two add-on enables and the first join; the machine must still
    # converge (microseed-step retries).
    mkdir -p "$r/var/lib/fake-microk8s"
    echo 2 >"$r/var/lib/fake-microk8s/enable-failures"
    echo 1 >"$r/var/lib/fake-microk8s/join-failures"
    # Like 1.20, a join restarts every service: the node is not ready (and
    # lists no datastore) for a while after it. Tens of seconds, as on a
    # real machine.
    echo 40 >"$r/var/lib/fake-microk8s/join-ready-lag"

    cat >"$r/etc/cloud/cloud.cfg.d/90-microseed-test.cfg" <<'EOF'
# microseed tests: NoCloud only; render the network like Ubuntu (netplan).
datasource_list: [NoCloud, None]
system_info:
  network:
    renderers: [netplan, eni, networkd]
EOF
    echo "microseed-vm" >"$r/etc/hostname"
    : >"$r/etc/machine-id"
    printf 'LABEL=root / ext4 rw,errors=remount-ro 0 1\n' >"$r/etc/fstab"
    rm -rf "$r/var/lib/cloud/"*

    install -D -m 755 "$MS_SCRIPTS_DIR/vm/vm-report.sh" "$r/usr/local/sbin/microseed-report"
    install -D -m 755 "$MS_SCRIPTS_DIR/vm/vm-fake-master.sh" "$r/usr/local/sbin/microseed-test-fake-master"
    # The first microseed-status snapshot showing a failing step, taken from
    # before the steps start (see vm-status-watch.sh): the report's own
    # polling starts after cloud-final and can miss the failure window.
    install -D -m 755 "$MS_SCRIPTS_DIR/vm/vm-status-watch.sh" "$r/usr/local/sbin/microseed-test-status-watch"
    cat >"$r/etc/systemd/system/microseed-test-status-watch.service" <<'EOF'
[Unit]
Description=microseed tests: keep the first microseed-status snapshot that shows a failing step
After=local-fs.target

[Service]
ExecStart=/usr/local/sbin/microseed-test-status-watch

[Install]
WantedBy=multi-user.target
EOF
    # A worker boots alone: with microseed.test.fake-master=IP on the kernel
    # command line, this stands in for the master at IP (its fingerprint
    # socket and cluster agent certificate), so the worker's join goes the
    # real way, verifying the master's proof before it sends the token.
    cat >"$r/etc/systemd/system/microseed-test-fake-master.service" <<'EOF'
[Unit]
Description=microseed tests: the master's fingerprint service and agent, for a worker booted alone
ConditionKernelCommandLine=microseed.test.fake-master
After=network.target

[Service]
ExecStart=/usr/local/sbin/microseed-test-fake-master

[Install]
WantedBy=multi-user.target
EOF
    # The shared-network phase (cluster-phase.sh): the worker joins the real
    # master VM, whose stand-in cluster agent judges the token.
    install -D -m 755 "$MS_SCRIPTS_DIR/vm/vm-cluster-agent.py" "$r/usr/local/sbin/microseed-test-cluster-agent"
    cat >"$r/etc/systemd/system/microseed-test-cluster-agent.service" <<'EOF'
[Unit]
Description=microseed tests: a stand-in MicroK8s cluster agent on 25000 (joins judged by the stand-in microk8s)
ConditionKernelCommandLine=microseed.test.join-agent
After=network.target

[Service]
ExecStart=/usr/local/sbin/microseed-test-cluster-agent
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
    # Ubuntu 24.04's socket-activated OpenSSH, on boots with
    # microseed.test.ubuntu=24.04 only (see vm-noble-ssh.sh): a generator
    # standing in for noble's sshd-socket-generator, and a unit that switches
    # ssh.service to ssh.socket before cloud-init runs.
    install -D -m 755 "$MS_SCRIPTS_DIR/vm/vm-noble-ssh.sh" "$r/usr/local/sbin/microseed-test-noble-ssh"
    install -D -m 755 "$MS_SCRIPTS_DIR/vm/vm-noble-ssh.sh" "$r/etc/systemd/system-generators/microseed-test-noble-ssh-generator"
    # With microseed.test.ssh-move-fails-once as well: the first move fails,
    # and this keeps ufw's and the listeners' state right after the rollback.
    install -D -m 755 "$MS_SCRIPTS_DIR/vm/vm-noble-ssh.sh" "$r/usr/local/sbin/microseed-test-ssh-rollback-watch"
    cat >"$r/etc/systemd/system/microseed-test-ssh-rollback-watch.service" <<'EOF'
[Unit]
Description=microseed tests: ufw and listeners right after the ssh step rolls back
ConditionKernelCommandLine=microseed.test.ssh-move-fails-once
After=local-fs.target

[Service]
ExecStart=/usr/local/sbin/microseed-test-ssh-rollback-watch

[Install]
WantedBy=multi-user.target
EOF
    cat >"$r/etc/systemd/system/microseed-test-noble-ssh.service" <<'EOF'
[Unit]
Description=microseed tests: OpenSSH socket-activated, as on Ubuntu 24.04
ConditionKernelCommandLine=microseed.test.ubuntu=24.04
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target cloud-init-local.service ssh.service ssh.socket

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/microseed-test-noble-ssh
TimeoutStartSec=120

[Install]
WantedBy=sysinit.target
EOF
    # Ordered after cloud-final (WantedBy=cloud-final). Also wanted by
    # multi-user.target without default dependencies (no ordering cycle), so a
    # boot where cloud-init is disabled still reports and powers off.
    cat >"$r/etc/systemd/system/microseed-report.service" <<'EOF'
[Unit]
Description=microseed test report to ttyS1, then power off
DefaultDependencies=no
After=cloud-final.service basic.target network.target
Wants=basic.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/microseed-report /dev/ttyS1
StandardOutput=journal+console
# The convergence wait is bounded by its polls and the boot by
# MS_BOOT_TIMEOUT; a unit timeout shorter than the wait loses the report.
TimeoutStartSec=1800

[Install]
WantedBy=cloud-final.service multi-user.target
EOF
    # The image's own systemctl makes each unit's links from its [Install]
    # section (offline: nothing runs in the chroot).
    chroot "$r" systemctl enable --quiet microseed-test-status-watch.service \
        microseed-test-fake-master.service microseed-test-cluster-agent.service \
        microseed-test-noble-ssh.service microseed-test-ssh-rollback-watch.service microseed-report.service ||
        ms_die "enabling the test units in $r failed"
    # Quiet serial getty on ttyS0 is fine; no login needed.

    local k i
    k="$(find "$r/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)"
    i="$(find "$r/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)"
    [[ -n "$k" && -n "$i" ]] || ms_die "no kernel/initrd in $r/boot"
    cp "$k" "$dest/vmlinuz"
    cp "$i" "$dest/initrd.img"
    ms_log "making root.img (ext4, 3G) from the chroot"
    rm -f "$dest/root.img"
    mkfs.ext4 -q -F -L root -d "$r" "$dest/root.img" 3G ||
        ms_die "mkfs.ext4 -d failed (mke2fs too old? needs -d support)"
}
