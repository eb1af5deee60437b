#!/bin/sh
# Makes the Debian bookworm test VM run OpenSSH the way Ubuntu 24.04 (noble)
# does, for boots whose kernel command line says microseed.test.ubuntu=24.04
# (scripts/acceptance.sh with MS_RELEASE=24.04). Installed by
# recipe-bookworm-vm.sh in two roles, chosen by the name it runs under:
#
#  microseed-test-noble-ssh-generator DIR [DIR DIR]   (a systemd generator)
#    Stands in for Ubuntu's sshd-socket-generator, which Debian does not
#    ship: at every boot and every daemon-reload it gives ssh.socket noble's
#    [Socket] section (IPv6 and IPv4 port 22, BindIPv6Only=ipv6-only,
#    FreeBind=yes) and, when sshd's own configuration (sshd -T: sshd_config
#    and its sshd_config.d drop-ins) listens anywhere else, replaces the
#    listen addresses with sshd's in DIR/ssh.socket.d/addresses.conf, as
#    noble's generator does. So a new Port takes effect on the socket only
#    after daemon-reload and a restart of ssh.socket, as on noble.
#
#    With microseed.test.ssh-move-fails-once on the kernel command line as
#    well, the first time sshd asks for another port the generator leaves
#    the socket on 22, as a generator or socket that failed would: the
#    seed's microseed-ssh must roll back, keep 22 reachable through ufw, and
#    move on its next attempt.
#
#  microseed-test-ssh-rollback-watch   (on such boots)
#    Waits for the ssh step's first failure (microseed-step's error file,
#    written once the attempt, rollback included, has exited) and keeps
#    what ufw allows and what listens at that moment, before the retry, in
#    /run/microseed-test/ssh-rollback for vm-report.sh.
#
#  microseed-test-noble-ssh   (microseed-test-noble-ssh.service, early boot)
#    The disk as noble leaves it: ssh.socket enabled, ssh.service disabled.
#    This boot's start jobs were queued before the switch, so it also
#    replaces ssh.service's with a stop and starts ssh.socket.
#
# Not reproduced: Debian's sshd 9.2 lacks Ubuntu's socket-activation patch,
# so a connection to the socket would start an sshd that binds the port
# itself and fails; the acceptance checks what listens, never connects.
set -u
want=microseed.test.ubuntu=24.04
tr ' ' '\n' </proc/cmdline | grep -qxF "$want" || exit 0

case "$(basename "$0")" in
*-generator)
    out=${1:?usage: microseed-test-noble-ssh-generator DIR [DIR DIR]}
    d="$out/ssh.socket.d"
    mkdir -p "$d"
    cat >"$d/00-noble.conf" <<'EOF'
# microseed tests: noble's ssh.socket [Socket] section (Debian's has port 22 only)
[Socket]
ListenStream=
ListenStream=[::]:22
ListenStream=0.0.0.0:22
BindIPv6Only=ipv6-only
Accept=no
FreeBind=yes
EOF
    # sshd -T checks for its privilege separation directory, which only
    # exists while ssh.service runs; /run is writable for generators.
    mkdir -p /run/sshd
    if ! addrs=$(/usr/sbin/sshd -T 2>&1); then
        echo "microseed-test-noble-ssh-generator: sshd -T failed: $addrs" >&2
        exit 0
    fi
    addrs=$(printf '%s\n' "$addrs" | awk '$1 == "listenaddress" { print $2 }')
    custom=$(printf '%s\n' "$addrs" | grep -vxE '0\.0\.0\.0:22|\[::\]:22')
    if [ -z "$addrs" ] || [ -z "$custom" ]; then
        rm -f "$d/addresses.conf"
        exit 0
    fi
    failed=/run/microseed-test/ssh-move-failed
    if tr ' ' '\n' </proc/cmdline | grep -qxF microseed.test.ssh-move-fails-once && [ ! -e "$failed" ]; then
        mkdir -p "${failed%/*}"
        printf '%s\n' "$custom" >"$failed"
        rm -f "$d/addresses.conf"
        echo "microseed-test-noble-ssh-generator: microseed.test.ssh-move-fails-once: ssh.socket stays on 22 this time" >/dev/kmsg 2>/dev/null || true
        exit 0
    fi
    {
        echo "# microseed tests: as noble's sshd-socket-generator, from sshd -T"
        echo "[Socket]"
        echo "ListenStream="
        printf '%s\n' "$addrs" | sed 's/^/ListenStream=/'
    } >"$d/addresses.conf"
    ;;
*-rollback-watch)
    tr ' ' '\n' </proc/cmdline | grep -qxF microseed.test.ssh-move-fails-once || exit 0
    out=/run/microseed-test/ssh-rollback
    err=/var/lib/microseed/error/ssh
    mkdir -p "${out%/*}"
    for _ in $(seq 18000); do
        if [ -e "$err" ]; then
            {
                echo "ssh step error: $(head -n 1 "$err")"
                echo "--- ufw status verbose"
                ufw status verbose 2>&1
                echo "--- ssh.socket"
                systemctl show -p Listen ssh.socket 2>&1
                echo "--- tcp listeners"
                ss -Htlnp 2>&1
                echo "--- sshd_config.d"
                ls /etc/ssh/sshd_config.d 2>&1
            } >"$out.new"
            mv -f "$out.new" "$out"
            exit 0
        fi
        sleep 0.1
    done
    ;;
*)
    # The links `systemctl disable ssh.service; systemctl enable ssh.socket`
    # leave, made directly: on Debian those commands also run update-rc.d
    # for /etc/init.d/ssh, minutes under emulation on a loaded machine.
    rm -f /etc/systemd/system/multi-user.target.wants/ssh.service /etc/systemd/system/sshd.service
    mkdir -p /etc/systemd/system/sockets.target.wants
    ln -sfn /lib/systemd/system/ssh.socket /etc/systemd/system/sockets.target.wants/ssh.socket
    systemctl --no-block stop ssh.service
    systemctl --no-block start ssh.socket
    echo "microseed-test-noble-ssh: ssh.socket enabled, ssh.service disabled (as on Ubuntu 24.04)"
    ;;
esac
