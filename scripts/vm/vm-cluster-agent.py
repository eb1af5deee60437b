#!/usr/bin/python3
# Runs inside a test VM (installed as /usr/local/sbin/microseed-test-cluster-agent
# by recipe-bookworm-vm.sh) when the kernel command line says
# microseed.test.join-agent: the acceptance run's shared-network phase, where
# the worker joins the real master VM. Stands in for MicroK8s 1.20's cluster
# agent on port 25000: TLS with the certificate the stand-in snap made at
# install (the one the master's microseed-fingerprint socket proves), and
# POST /cluster/api/v1.0/join taking {"token", "hostname"} as 1.20's
# join.py sends them. The stand-in microk8s judges the token by the
# channel's rules against the tokens this machine registered
# (`microk8s fake-agent-join HOSTNAME`, token on stdin) and records the
# joiner, which `microk8s kubectl get nodes -o json` then lists. Like 1.20's
# agent (join_node_dqlite), it accepts a node that has joined already; it
# logs how many joins each host made, so a second join shows.
# Every MicroK8s node runs an agent, so this runs on the worker too.
# Like the 1.27+ agent (cmd/cluster-agent.go), it also applies the launch
# configurations dropped into $SNAP_COMMON/etc/launcher every 5 s
# (`microk8s fake-agent-launch`; a master's persistent token, docs/ha.md).
#
# With microseed.test.ha as well (scripts/ha-vm.sh: three master VMs and a
# worker), it is the several-node stand-in of tests/fixtures/fakes/microk8s
# (its peers mode, which shares a directory) carried over the network,
# as upstream's agent (v2/join.go) and dqlite do:
#  - the token is judged against THIS node's own files only;
#  - a master's join (no "worker") makes the joiner a member of this node's
#    datastore, whatever it is (a fresh node's lone 127.0.0.1:19001 makes a
#    new cluster with the joiner); the answer carries the member list;
#  - one membership change at a time: every member still holding the
#    cluster is locked for join-change-secs, through a stand-in dqlite on
#    each node's TCP 19001 (so ufw's 19001 rules between masters are in the
#    path), and a second change meanwhile fails "a membership change is in
#    progress"; a change needs a majority of the voters (the first 3);
#  - 1.23+: a joiner whose IP:19001 is a member is refused "already known
#    to dqlite" (504);
#  - every member's cluster.yaml lists everyone, the first 3 voters
#    (Role 0), the next 3 stand-bys (Role 1) (go-dqlite app/options.go);
#  - a worker's join (1.23+ --worker) adds its node on every member.
# `microseed-test-cluster-agent joined ANSWER` is the joiner's side (run by
# the stand-in microk8s after a 200): the old datastore moves aside, the
# answer's members become its cluster.yaml, its node list the answer's, and
# its agent certificate is reissued (apiservice-kicker's ensure_server_ca),
# so its fingerprint changes after the join. The certificate is read again
# for every connection.
import http.client
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

# The overrides exist for trying this outside the VM.
SNAP_DATA = os.environ.get("FAKE_MICROK8S_DATA", "/var/snap/microk8s/current")
CONF = os.environ.get("FAKE_MICROK8S_CONF", "/var/lib/fake-microk8s")
MICROK8S = os.environ.get("FAKE_MICROK8S_BIN", "/snap/bin/microk8s")
LOG = os.environ.get("FAKE_CLUSTER_AGENT_LOG", "/var/log/fake-cluster-agent.log")
BACKEND = os.path.join(SNAP_DATA, "var", "kubernetes", "backend")
CRT = os.path.join(SNAP_DATA, "certs", "server.crt")
KEY = os.path.join(SNAP_DATA, "certs", "server.key")
NODES = os.path.join(SNAP_DATA, "fake-nodes")
DQLITE_PORT = 19001
BIND = os.environ.get("FAKE_CLUSTER_AGENT_ADDR", "0.0.0.0")


def cmdline():
    try:
        with open("/proc/cmdline") as f:
            return f.read().split()
    except OSError:
        return []


HA = "microseed.test.ha" in cmdline() or os.environ.get("FAKE_CLUSTER_AGENT_HA") == "1"


def log(msg):
    with open(LOG, "a") as f:
        f.write("{} {}\n".format(time.strftime("%H:%M:%S"), msg))


def minor():
    try:
        with open(os.path.join(CONF, "channel")) as f:
            ch = f.read().strip().split("/")[0]
        return int(ch.split(".")[1]) if ch.startswith("1.") else 99
    except (OSError, ValueError, IndexError):
        return 20


def members(me):
    """The datastore's member addresses as this node sees them, a fresh
    node's 127.0.0.1 as its address ME."""
    try:
        with open(os.path.join(BACKEND, "cluster.yaml")) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        if line.startswith("- Address:"):
            a = line.split(":", 1)[1].strip()
            if a.startswith("127.0.0.1:"):
                a = me + a[len("127.0.0.1") :]
            out.append(a)
    return out


def write_members(addrs, backend=BACKEND):
    """go-dqlite's node store: roles by position."""
    os.makedirs(backend, exist_ok=True)
    text = ""
    for n, a in enumerate(addrs, 1):
        role = 0 if n <= 3 else 1 if n <= 6 else 2
        text += "- Address: {}\n  ID: {}\n  Role: {}\n".format(a, 3297041220608546238 + n, role)
    tmp = os.path.join(backend, "cluster.yaml.new")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(backend, "cluster.yaml"))


def nodes():
    try:
        with open(NODES) as f:
            return [n for n in f.read().split() if n]
    except OSError:
        return []


NODES_LOCK = threading.Lock()


def add_node(name):
    with NODES_LOCK:
        if name and name not in nodes():
            with open(NODES, "a") as f:
                f.write(name + "\n")


def drop_node(name):
    with NODES_LOCK:
        keep = [n for n in nodes() if n != name]
        with open(NODES, "w") as f:
            f.write("".join(n + "\n" for n in keep))


def lock():
    try:
        os.mkdir(os.path.join(BACKEND, ".membership-change"))
        return True
    except OSError:
        return False


def unlock():
    try:
        os.rmdir(os.path.join(BACKEND, ".membership-change"))
    except OSError:
        pass


def apply(addrs, node):
    write_members(addrs)
    add_node(node)
    return {"nodes": nodes(), "name": socket.gethostname()}


# --- the stand-in dqlite on 19001: what one member does for a change ---


class Dqlite(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/members":
            self.reply(404, {})
            return
        self.reply(200, {"members": members(self.connection.getsockname()[0])})

    def do_POST(self):
        try:
            n = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(min(n, 65536)) or b"{}")
        except ValueError:
            self.reply(400, {})
            return
        if self.path == "/lock":
            self.reply(200 if lock() else 409, {})
        elif self.path == "/unlock":
            unlock()
            self.reply(200, {})
        elif self.path == "/apply":
            self.reply(200, apply([str(a) for a in req.get("members", [])], str(req.get("node", ""))))
        elif self.path == "/node":
            add_node(str(req.get("node", "")))
            self.reply(200, {"nodes": nodes(), "name": socket.gethostname()})
        else:
            self.reply(404, {})

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def peer(addr, method, path, obj=None):
    """A call to the member at ADDR (IP:19001); None if it cannot be reached."""
    host, port = addr.rsplit(":", 1)
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        c.request(method, path, json.dumps(obj or {}), {"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    except (OSError, ValueError, http.client.HTTPException):
        return None


class Member:
    """A datastore member as the contacted node reaches it: itself
    directly, any other over 19001."""

    def __init__(self, addr, local):
        self.addr, self.local = addr, local

    def lock(self):
        if self.local:
            return lock()
        r = peer(self.addr, "POST", "/lock")
        return r is not None and r[0] == 200

    def unlock(self):
        if self.local:
            unlock()
        else:
            peer(self.addr, "POST", "/unlock")

    def apply(self, addrs, node):
        if self.local:
            return apply(addrs, node)
        r = peer(self.addr, "POST", "/apply", {"members": addrs, "node": node})
        return r[1] if r and r[0] == 200 else {"nodes": []}

    def add_node(self, node):
        if self.local:
            add_node(node)
            return {"nodes": nodes(), "name": socket.gethostname()}
        r = peer(self.addr, "POST", "/node", {"node": node})
        return r[1] if r and r[0] == 200 else {"nodes": []}


def holders(me, addrs):
    """The members that are up and still hold the cluster (their own
    datastore lists them)."""
    out = []
    for a in addrs:
        if a == "{}:{}".format(me, DQLITE_PORT):
            out.append(Member(a, True))
            continue
        r = peer(a, "GET", "/members")
        if r and r[0] == 200 and a in r[1].get("members", []):
            out.append(Member(a, False))
    return out


CHANGE = threading.Lock()


def ha_join(me, joiner, host, worker):
    """The contacted node's side of a join whose token it accepted.
    Returns (HTTP code, answer)."""
    addrs = members(me)
    alive = holders(me, addrs)
    if worker:
        names = set()
        for m in alive:
            a = m.add_node(host)
            names.update(a.get("nodes", []))
            names.add(a.get("name", ""))
        return 200, {"nodes": sorted(n for n in names if n)}
    locked = []
    try:
        for m in alive:
            if not m.lock():
                return 503, {"error": "a membership change is in progress, try again"}
            locked.append(m)
        me_addr = "{}:{}".format(joiner, DQLITE_PORT)
        if minor() >= 23 and me_addr in addrs:
            return 504, {"error": "Node {} already known to dqlite".format(me_addr)}
        voters = addrs[:3]
        if sum(1 for m in alive if m.addr in voters) * 2 <= len(voters):
            return 504, {"error": "context deadline exceeded (no quorum)"}
        try:
            with open(os.path.join(CONF, "join-change-secs")) as f:
                time.sleep(float(f.read().strip() or 1))
        except (OSError, ValueError):
            time.sleep(1)
        new = addrs + ([me_addr] if me_addr not in addrs else [])
        names = set()
        for m in alive:
            a = m.apply(new, host)
            names.update(a.get("nodes", []))
            names.add(a.get("name", ""))
        return 200, {"members": new, "nodes": sorted(n for n in names if n)}
    finally:
        for m in locked:
            m.unlock()


class Agent(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/cluster/api/v1.0/join":
            self.reply(404, {"error": "not found"})
            return
        try:
            n = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(min(n, 65536)))
            token, host = str(req["token"]), str(req["hostname"])
            worker = bool(req.get("worker", False))
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": "bad request"})
            return
        joiner = self.client_address[0]
        known = host in nodes()
        r = subprocess.run(
            [MICROK8S, "fake-agent-join", host],
            input=token + "\n",
            text=True,
            capture_output=True,
            timeout=30,
        )
        # The token itself is never logged.
        if r.returncode != 0:
            log("join from {} ({}): invalid token".format(host, joiner))
            self.reply(500, {"error": "Invalid token"})
            return
        if not HA:
            JOINS[host] = JOINS.get(host, 0) + 1
            log("join from {} ({}): accepted (join {} from this host)".format(host, joiner, JOINS[host]))
            self.reply(200, {"hostname_override": host})
            return
        me = self.connection.getsockname()[0]
        with CHANGE:
            code, answer = ha_join(me, joiner, host, worker)
        if code != 200 and not known:
            drop_node(host)
        log(
            "{} join from {} ({}): {} {}".format(
                "worker" if worker else "master", host, joiner, code, answer.get("error") or " ".join(answer.get("members", []))
            )
        )
        self.reply(code, answer)

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        log(fmt % args)


def launcher():
    while True:
        try:
            subprocess.run([MICROK8S, "fake-agent-launch"], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            log("launch configurations: {}".format(e))
        time.sleep(5)
JOINS = {}


class TLSServer(http.server.ThreadingHTTPServer):
    # The certificate is loaded for every connection: a join reissues it.
    def get_request(self):
        sock, addr = self.socket.accept()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CRT, KEY)
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


def joined(answer_file):
    """The joiner's side of a master join the agent accepted."""
    with open(answer_file) as f:
        answer = json.load(f)
    addrs = answer.get("members")
    if not addrs:
        print("the agent's answer carries no member list", file=sys.stderr)
        return 1
    backup = os.path.join(SNAP_DATA, "var", "kubernetes", "backend.backup")
    subprocess.run(["rm", "-rf", backup], check=True)
    if os.path.isdir(BACKEND):
        os.rename(BACKEND, backup)
    write_members(addrs)
    for n in answer.get("nodes", []):
        add_node(n)
    for suffix in ("crt", "key"):
        try:
            os.remove(os.path.join(SNAP_DATA, "certs", "server.{}.new".format(suffix)))
        except OSError:
            pass
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", "/CN=microseed-test", "-keyout", KEY + ".new", "-out", CRT + ".new"],
        check=True,
        capture_output=True,
    )
    os.replace(KEY + ".new", KEY)
    os.replace(CRT + ".new", CRT)
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "joined":
        return joined(sys.argv[2])
    # The certificate appears when the stand-in snap installs MicroK8s,
    # during first boot; the NFS server never installs it.
    while not (os.path.exists(CRT) and os.path.exists(KEY)):
        time.sleep(2)
    threading.Thread(target=launcher, daemon=True).start()
    if HA:
        dq = http.server.ThreadingHTTPServer((BIND, DQLITE_PORT), Dqlite)
        threading.Thread(target=dq.serve_forever, daemon=True).start()
        log("stand-in dqlite listening on {}".format(DQLITE_PORT))
    srv = TLSServer((BIND, 25000), Agent)
    log("listening on 25000")
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
