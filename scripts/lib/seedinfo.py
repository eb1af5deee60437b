#!/usr/bin/python3
"""seedinfo.py DIR: print what a NoCloud seed directory says about its machine,
as shell assignments (safe to eval):

  SEED_HOSTNAME   meta-data local-hostname (else user-data hostname)
  SEED_INSTANCE   meta-data instance-id
  SEED_MACS       every "macaddress" matched by network-config (space separated)
  SEED_ADDRS      static IPv4 addresses as ADDR/PREFIX (space separated)
  SEED_GATEWAY    IPv4 default gateway (gateway4, a 0.0.0.0/0 or "default"
                  route, or a v1 subnet gateway)
  SEED_SSH_PORT   the sshd port microseed moves ssh to: the "Port" line of
                  the staged /etc/microseed/sshd.conf in user-data's
                  write_files (22 when there is none)

Reads network-config v2 (netplan; with or without a top-level "network:")
and v1. Reads YAML the way cloud-init does (PyYAML safe_load).
"""
import ipaddress
import os
import shlex
import sys

import yaml


def load(path):
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return data if isinstance(data, dict) else {}


def prefixed(addr, netmask=None):
    if "/" in str(addr):
        return str(addr)
    if netmask:
        return "%s/%d" % (addr, ipaddress.IPv4Network("0.0.0.0/%s" % netmask).prefixlen)
    return "%s/32" % addr


def ssh_port(user):
    # An installer seed carries the first-boot config under autoinstall.
    inner = (user.get("autoinstall") or {}).get("user-data")
    if isinstance(inner, dict):
        user = inner
    for f in user.get("write_files") or []:
        if not isinstance(f, dict) or f.get("path") != "/etc/microseed/sshd.conf":
            continue
        for line in str(f.get("content") or "").splitlines():
            words = line.split()
            if len(words) == 2 and words[0].lower() == "port":
                return words[1]
    return "22"


def main(d):
    meta = load(os.path.join(d, "meta-data"))
    user = {}
    try:
        user = load(os.path.join(d, "user-data"))
    except yaml.YAMLError:
        pass
    net = load(os.path.join(d, "network-config"))
    if "network" in net and isinstance(net["network"], dict):
        net = net["network"]

    macs, addrs, gw = [], [], ""
    if net.get("version") == 2:
        for kind in ("ethernets", "bonds", "bridges", "vlans"):
            for _name, cfg in (net.get(kind) or {}).items():
                cfg = cfg or {}
                mac = (cfg.get("match") or {}).get("macaddress") or cfg.get("macaddress")
                if mac:
                    macs.append(str(mac).lower())
                for a in cfg.get("addresses") or []:
                    a = str(a)
                    if ":" not in a:
                        addrs.append(a)
                if cfg.get("gateway4") and not gw:
                    gw = str(cfg["gateway4"])
                for r in cfg.get("routes") or []:
                    if str(r.get("to")) in ("default", "0.0.0.0/0") and not gw:
                        gw = str(r.get("via", ""))
    elif net.get("version") == 1:
        for item in net.get("config") or []:
            if item.get("type") != "physical":
                continue
            if item.get("mac_address"):
                macs.append(str(item["mac_address"]).lower())
            for s in item.get("subnets") or []:
                if s.get("type") in ("static", "static4") and ":" not in str(s.get("address", ":")):
                    addrs.append(prefixed(s["address"], s.get("netmask")))
                    if s.get("gateway") and not gw:
                        gw = str(s["gateway"])

    out = {
        "SEED_HOSTNAME": str(meta.get("local-hostname") or user.get("hostname") or ""),
        "SEED_INSTANCE": str(meta.get("instance-id") or ""),
        "SEED_MACS": " ".join(macs),
        "SEED_ADDRS": " ".join(addrs),
        "SEED_GATEWAY": gw,
        "SEED_SSH_PORT": ssh_port(user),
    }
    for k, v in out.items():
        print("%s=%s" % (k, shlex.quote(v)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: seedinfo.py SEED_DIR")
    main(sys.argv[1])
