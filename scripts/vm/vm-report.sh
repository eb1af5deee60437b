#!/bin/bash
# Runs inside the test VM (installed as /usr/local/sbin/microseed-report by
# recipe-bookworm-vm.sh, started by microseed-report.service after
# cloud-final): writes a sectioned report to $1 (ttyS1), then powers off
# (with microseed.test.stay-up on the kernel command line it stays up, for
# `microseed status` in the acceptance run's shared-network phase).
# Sections: lines "===== NAME =====", the report framed by
# "===== BEGIN microseed-report =====" and "===== END microseed-report =====".
# Parsed by scripts/lib/report.sh; keep names stable.
out="${1:-/dev/ttyS1}"
exec >"$out" 2>&1
export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat SYSTEMD_URLIFY=0 TERM=dumb LC_ALL=C.UTF-8

sec() { printf '\n===== %s =====\n' "$1"; }
run() {
    "$@"
    echo "rc=$?"
}

# microseed's steps run in the background (their units were started
# --no-block at first boot; the image's stand-in microk8s refuses the first
# add-on enables and the first join): wait, bounded, until microseed-status
# says converged, keeping the first snapshot that shows a failing step.
# microseed.test.converge-polls=N on the kernel command line
# (scripts/acceptance.sh passes MS_CONVERGE_POLLS): machines booted together
# wait on each other (the worker's join on the master), and a loaded host is
# slower, so they may need longer.
failing=""
polls=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^microseed\.test\.converge-polls=\([0-9][0-9]*\)$/\1/p')
if [ -x /usr/local/sbin/microseed-status ]; then
    for _ in $(seq 1 "${polls:-${MS_CONVERGE_POLLS:-60}}"); do
        snap="$(/usr/local/sbin/microseed-status 2>&1)" && break
        # A step's row says failed (as in vm-status-watch.sh).
        if [ -z "$failing" ] && grep -qE '^[^ ]+ +failed' <<<"$snap"; then
            failing="$snap"
        fi
        sleep 3
    done
fi

echo "===== BEGIN microseed-report ====="
sec "cloud-init status"
run cloud-init status --long
sec "result.json"
cat /run/cloud-init/result.json 2>&1
sec "datasource"
cloud-init query ds 2>/dev/null | head -c 2000
echo
grep -hoE 'DataSource[A-Za-z]+ \[[^]]*\](\[[^]]*\])*' /var/log/cloud-init.log 2>/dev/null | sort -u
sec "cloud-init warnings"
grep -hE ' (WARNING|ERROR|CRITICAL)' /var/log/cloud-init.log 2>/dev/null | tail -n 50
sec "hostname"
hostname
sec "hostname -f"
hostname -f 2>&1
sec "ip -4 addr"
ip -4 addr
sec "ip link"
ip -o link
sec "ip route"
ip route
sec "/etc/hosts"
cat /etc/hosts
sec "/etc/chrony/chrony.conf"
cat /etc/chrony/chrony.conf
sec "sshd_config.d"
for f in /etc/ssh/sshd_config.d/*; do
    [ -e "$f" ] || continue
    echo "--- $f"
    cat "$f"
done
sec "sshd -t"
run sshd -t
sec "ufw status verbose"
run ufw status verbose
sec "users"
getent passwd | awk -F: '$3 >= 1000 && $3 < 65534'
for h in /root /home/*; do
    [ -s "$h/.ssh/authorized_keys" ] || continue
    echo "--- $h/.ssh/authorized_keys"
    cut -c1-60 "$h/.ssh/authorized_keys"
done
sec "groups"
getent group microk8s sudo 2>&1
sec "/etc/exports"
cat /etc/exports 2>&1
sec "export dirs"
grep -vE '^[[:space:]]*(#|$)' /etc/exports 2>/dev/null | awk '{print $1}' | while read -r d; do
    stat -c '%U:%G %u:%g %a %n' "$d" 2>&1
    find "$d" -mindepth 1 -maxdepth 3 -type d -exec stat -c '%U:%G %u:%g %a %n' {} + 2>/dev/null
done
sec "exportfs -v"
exportfs -v 2>&1
sec "microseed-status while failing"
# The watcher's snapshot (from before the steps started) when it has one;
# else the first failing one the wait above saw.
if [ -s /run/microseed-test/status-while-failing ]; then
    cat /run/microseed-test/status-while-failing
else
    printf '%s\n' "$failing"
fi
sec "microseed-status"
run /usr/local/sbin/microseed-status
sec "microseed journal"
# Long enough for every step's retries: the checks look for early attempts
# (a first add-on enable refused) after the ssh step's rollback and retry.
journalctl -b -u 'microseed-*' --no-pager -o cat 2>&1 | tail -n 250
sec "cluster-tokens"
# Token length and expiry per line: never the token itself.
awk -F'|' '{ print length($1), $2 }' /var/snap/microk8s/current/credentials/cluster-tokens.txt 2>&1
sec "microseed-join.service"
echo "is-enabled: $(systemctl is-enabled microseed-join.service 2>&1)"
echo "is-active: $(systemctl is-active microseed-join.service 2>&1)"
systemctl cat microseed-join.service 2>&1
sec "microseed-join journal"
journalctl -b -u microseed-join.service --no-pager -o cat 2>&1 | tail -n 40
sec "fingerprint socket"
echo "is-enabled: $(systemctl is-enabled microseed-fingerprint.socket 2>&1)"
echo "is-active: $(systemctl is-active microseed-fingerprint.socket 2>&1)"
sec "fingerprint fetch"
# The master's proof, fetched and checked over its socket as a worker does.
if [ -x /usr/local/lib/microseed/microseed-fingerprint ]; then
    run /usr/local/lib/microseed/microseed-fingerprint fetch 127.0.0.1
fi
sec "agent certificate sha256"
openssl x509 -outform der -in /var/snap/microk8s/current/certs/server.crt 2>&1 | sha256sum
sec "fake master"
cat /var/log/fake-master.log 2>&1
sec "fake cluster agent"
cat /var/log/fake-cluster-agent.log 2>&1
sec "fake-microk8s verified"
cat /var/log/fake-microk8s.calls.verified 2>&1
sec "fake-microk8s.calls"
cat /var/log/fake-microk8s.calls 2>&1
sec "fake-microk8s state"
# powered-off: the stand-in cut the power at its first enable (a boot ago).
ls -1 /var/lib/fake-microk8s 2>&1
sec "fake-microk8s joins"
# Joins the stand-in carried out (a refused one is not counted).
cat /var/lib/fake-microk8s/joins 2>&1
sec "fake-apt.calls"
cat /var/log/fake-apt.calls 2>&1
sec "timezone"
readlink /etc/localtime
# Who listens for ssh, and since when (the 24.04 checks: ssh.socket on the
# cluster's port, switched only after the firewall allowed it).
sec "ssh units"
for u in ssh.socket ssh.service; do
    echo "$u is-enabled: $(systemctl is-enabled "$u" 2>&1)"
    echo "$u is-active: $(systemctl is-active "$u" 2>&1)"
done
systemctl show -p Listen ssh.socket 2>&1
sec "ssh.socket drop-ins"
for f in /run/systemd/generator/ssh.socket.d/* /etc/systemd/system/ssh.socket.d/*; do
    [ -e "$f" ] || continue
    echo "--- $f"
    cat "$f"
done
sec "tcp listeners"
ss -Htlnp 2>&1
sec "ssh journal"
journalctl -b -o short-monotonic --no-pager -u microseed-test-noble-ssh.service -u microseed-firewall.service \
    -u microseed-ssh.service -u ssh.socket -u ssh.service 2>&1 | grep -v 'Rules updated' | tail -n 150
sec "ssh rollback"
# microseed.test.ssh-move-fails-once boots: ufw and listeners right after
# the ssh step rolled back (vm-noble-ssh.sh's rollback watch).
cat /run/microseed-test/ssh-rollback 2>&1
sec "launch configuration"
# Mode and owner of the MicroK8s launch configuration (1.27+), the length of
# its persistent token and whether it is the seed's join token: never the token.
if [ -e /etc/microk8s.yaml ]; then
    stat -c '%a %U:%G' /etc/microk8s.yaml
    pt=$(sed -n 's/^persistentClusterToken: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/microk8s.yaml)
    echo "persistentClusterToken length: ${#pt}"
    if [ -n "$pt" ] && [ "$pt" = "$(cat /etc/microseed/join-token 2>/dev/null)" ]; then
        echo "persistentClusterToken is the join token: yes"
    else
        echo "persistentClusterToken is the join token: no"
    fi
fi
sec "failed units"
systemctl --failed --no-legend --plain 2>&1
sec "uptime"
cat /proc/uptime
echo
echo "===== END microseed-report ====="
sync
if grep -qw microseed.test.stay-up /proc/cmdline; then
    exit 0
fi
# poweroff.target through systemd's private socket (no logind/D-Bus needed).
systemctl start --no-block poweroff.target
