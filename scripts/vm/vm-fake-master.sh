#!/bin/bash
# Runs inside a worker's test VM (installed as
# /usr/local/sbin/microseed-test-fake-master by recipe-bookworm-vm.sh) when
# the kernel command line says microseed.test.fake-master=IP. The acceptance
# run boots each machine alone, so a worker's master is not there: this
# takes the master's address on the loopback and answers as a master does,
# with the worker's own copy of the master's fingerprint script (every
# MicroK8s node's seed carries it, and the token is the cluster's) and a
# fresh agent certificate. The worker's join then goes the real way: fetch
# the proof, check it, and pin the certificate in the join string, which the
# stand-in microk8s checks against this agent.
set -u
log=/var/log/fake-master.log
exec >>"$log" 2>&1
ip=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^microseed.test.fake-master=//p')
[ -n "$ip" ] || { echo "no microseed.test.fake-master=IP"; exit 1; }
script=/usr/local/lib/microseed/microseed-fingerprint
# cloud-init writes the seed's files during first boot: wait for them.
for _ in $(seq 600); do
    [ -x "$script" ] && [ -s /etc/microseed/join-token ] && break
    sleep 1
done
d=/var/lib/fake-master
mkdir -p "$d/certs"
[ -e "$d/certs/server.crt" ] ||
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=fake-master \
        -keyout "$d/certs/server.key" -out "$d/certs/server.crt" 2>/dev/null
ip addr add "$ip/32" dev lo 2>/dev/null || true
echo "fake master at $ip: agent certificate sha256 $(openssl x509 -outform der -in "$d/certs/server.crt" | sha256sum | cut -d' ' -f1)"
systemd-socket-activate -l "$ip:25001" --accept --inetd -E "MICROSEED_SNAP_DATA=$d" "$script" serve &
openssl s_server -quiet -accept "$ip:25000" -cert "$d/certs/server.crt" -key "$d/certs/server.key" </dev/null >/dev/null 2>&1 &
wait
