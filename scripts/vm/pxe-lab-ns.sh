#!/usr/bin/env bash
# pxe-lab-ns.sh QEMU_ROOT PXE_DIR WORK GUEST...
# Runs as PID 1 of fresh mount/net/pid namespaces (scripts/pxe-boot-test.sh),
# so everything it starts dies with it. The LAN, with no route out:
#   bridge ms-br, 172.20.10.5/20: `microseed serve PXE_DIR` on :8080 and
#     `dnsmasq --no-daemon --conf-file=PXE_DIR/dnsmasq.conf` (the proxy, as
#     the build wrote it);
#   a "home router" in a network namespace of its own (veth to the bridge,
#     172.20.0.1/20): a plain DHCP server (a second dnsmasq, no boot options),
#     one fixed address per guest MAC, in GUEST order from 172.20.0.101;
#   one qemu guest per GUEST (NAME,bios|uefi,MAC), network boot only, from
#     the bookworm chroot QEMU_ROOT, serial console to WORK/NAME.serial.
# A guest is finished when its qemu exits (the test initrd powers off), or
# when MS_PXE_WATCH seconds (60) have passed since it fetched ipxe/boot.ipxe
# without fetching, or starting to fetch, anything under boot/. All guests are bounded by
# MS_PXE_TIMEOUT (480 s). WORK/guests.txt: NAME FIRMWARE MAC IP HOW (exit=N,
# watched, timeout). Logs: WORK/{proxy,router,serve}.log, NAME.serial,
# NAME.qemu.log; WORK/tftp.txt: what TFTP serves (below). Without GUEST,
# only that TFTP check runs.
set -euo pipefail
qroot="$1" pxe="$2" work="$3"
shift 3
bin="${MICROSEED_BIN:?MICROSEED_BIN: the microseed binary}"
watch="${MS_PXE_WATCH:-60}"
limit="${MS_PXE_TIMEOUT:-480}"
lan_ip=172.20.10.5 router_ip=172.20.0.1 prefix=20 netmask=255.255.240.0

log() { printf 'pxe-lab: %s\n' "$*" >&2; }

mount --make-rprivate /
# dnsmasq as documented, but nothing of it reaches the host: its lease file
# and journald's syslog socket (/dev/log) are this namespace's own.
for d in /var/lib/misc /run/systemd/journal; do
    if [[ -d "$d" ]]; then mount -t tmpfs tmpfs "$d"; fi
done

ip link set lo up
ip link add ms-br type bridge
ip addr add "$lan_ip/$prefix" dev ms-br
ip link set ms-br up

# MS_PXE_CAPTURE=1: every packet on the LAN to WORK/lan.pcap (tcpdump, not
# among the test's dependencies: install it to debug).
if [[ "${MS_PXE_CAPTURE:-0}" == 1 ]]; then
    if command -v tcpdump >/dev/null; then
        tcpdump -i ms-br -U -w "$work/lan.pcap" 2>"$work/tcpdump.log" &
    else
        log "MS_PXE_CAPTURE=1 but no tcpdump: no capture"
    fi
fi

# The router's own network namespace, held by a sleeping process.
unshare --net sleep 100000 &
rpid=$!
sleep 0.2
ip link add ms-rt-lan type veth peer name ms-rt netns "/proc/$rpid/ns/net"
ip link set ms-rt-lan master ms-br up
in_router() { nsenter --net="/proc/$rpid/ns/net" "$@"; }
in_router ip link set lo up
in_router ip addr add "$router_ip/$prefix" dev ms-rt
in_router ip link set ms-rt up

names=() fws=() macs=() ips=()
n=0
for g in "$@"; do
    IFS=, read -r name fw mac <<<"$g"
    names+=("$name") fws+=("$fw") macs+=("$mac") ips+=("172.20.0.$((101 + n))")
    n=$((n + 1))
done

hosts=()
for i in "${!names[@]}"; do hosts+=("--dhcp-host=${macs[$i]},${ips[$i]}"); done
in_router dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=ms-rt --bind-interfaces \
    --dhcp-range=172.20.0.100,172.20.0.199,$netmask,1h --dhcp-option=option:router,$router_ip \
    --dhcp-leasefile="$work/router.leases" --log-dhcp "${hosts[@]}" >"$work/router.log" 2>&1 &

"$bin" serve "$pxe" --bind "$lan_ip:8080" >"$work/serve.url" 2>"$work/serve.log" &
# The proxy: the generated file, unmodified, run as docs/pxe.md says.
dnsmasq --no-daemon --conf-file="$pxe/dnsmasq.conf" >"$work/proxy.log" 2>&1 &
proxy=$!

for _ in $(seq 100); do
    if [[ -s "$work/serve.url" ]] && grep -q "TFTP root is" "$work/proxy.log"; then break; fi
    kill -0 "$proxy" 2>/dev/null || { log "the proxy dnsmasq exited"; cat "$work/proxy.log" >&2; exit 1; }
    sleep 0.1
done
[[ -s "$work/serve.url" ]] || { log "microseed serve did not start"; exit 1; }
grep -q "TFTP root is" "$work/proxy.log" || { log "the proxy dnsmasq did not start"; exit 1; }

# What TFTP hands out, asked from the router's side of the LAN: every file
# of the tree, one line each in WORK/tftp.txt, "REL served" (the same bytes),
# "REL differs" or "REL refused (curl rc)".
(cd "$pxe" && find . -type f -printf '%P\n' | LC_ALL=C sort) | while read -r rel; do
    rc=0
    in_router curl -s --max-time 10 -o "$work/tftp.got" "tftp://$lan_ip/$rel" || rc=$?
    if ((rc != 0)); then
        echo "$rel refused ($rc)"
    elif cmp -s "$work/tftp.got" "$pxe/$rel"; then
        echo "$rel served"
    else
        echo "$rel differs"
    fi
done >"$work/tftp.txt"
rm -f "$work/tftp.got"
if ((${#names[@]} == 0)); then
    log "no guests: TFTP checked only"
    exit 0
fi

# qemu from the chroot; this namespace's mounts vanish with it.
mount -t proc proc "$qroot/proc"
mount --rbind /dev "$qroot/dev"
mount -t tmpfs -o mode=1777 tmp "$qroot/tmp"
mkdir -p "$qroot/tmp/work"
mount --bind "$work" "$qroot/tmp/work"

pids=()
for i in "${!names[@]}"; do
    tap="ms-tap$i"
    ip tuntap add dev "$tap" mode tap
    ip link set "$tap" master ms-br up
    fwargs=()
    [[ "${fws[$i]}" == uefi ]] && fwargs=(-bios /usr/share/ovmf/OVMF.fd)
    chroot "$qroot" qemu-system-x86_64 -accel tcg -m 768 -smp 1 -nographic -no-reboot \
        -monitor none -serial "file:/tmp/work/${names[$i]}.serial" "${fwargs[@]}" \
        -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=n0,mac=${macs[$i]},bootindex=1" \
        </dev/null >"$work/${names[$i]}.qemu.log" 2>&1 &
    pids+=($!)
done

declare -A how=() seen=()
start=$SECONDS
while ((${#how[@]} < ${#names[@]})); do
    for i in "${!names[@]}"; do
        [[ -n "${how[$i]:-}" ]] && continue
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            rc=0
            wait "${pids[$i]}" || rc=$?
            how[$i]="exit=$rc"
            log "${names[$i]}: qemu exited ($rc) after $((SECONDS - start)) s"
            continue
        fi
        # When did this guest fetch its iPXE script, and did it fetch a
        # kernel? serve logs a request once answered, so a slow download
        # shows first on the console, where iPXE prints the URL it fetches.
        ip="${ips[$i]}"
        if grep -q "^$ip GET /ipxe/boot.ipxe 200 " "$work/serve.log" \
            && ! grep -q "^$ip GET /boot/" "$work/serve.log" \
            && ! grep -aq ":8080/boot/" "$work/${names[$i]}.serial"; then
            [[ -n "${seen[$i]:-}" ]] || seen[$i]=$SECONDS
            if ((SECONDS - seen[$i] >= watch)); then
                kill "${pids[$i]}" 2>/dev/null || true
                wait "${pids[$i]}" 2>/dev/null || true
                how[$i]=watched
                log "${names[$i]}: no kernel ${watch} s after its menu; stopped"
            fi
        fi
        if ((SECONDS - start >= limit)); then
            kill "${pids[$i]}" 2>/dev/null || true
            wait "${pids[$i]}" 2>/dev/null || true
            how[$i]=timeout
            log "${names[$i]}: timed out after $limit s"
        fi
    done
    sleep 1
done

: >"$work/guests.txt"
for i in "${!names[@]}"; do
    printf '%s %s %s %s %s\n' "${names[$i]}" "${fws[$i]}" "${macs[$i]}" "${ips[$i]}" "${how[$i]}" >>"$work/guests.txt"
done
log "done in $((SECONDS - start)) s"
