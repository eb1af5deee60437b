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
import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
import time

# The overrides exist for trying this outside the VM.
SNAP_DATA = os.environ.get("FAKE_MICROK8S_DATA", "/var/snap/microk8s/current")
MICROK8S = os.environ.get("FAKE_MICROK8S_BIN", "/snap/bin/microk8s")
LOG = os.environ.get("FAKE_CLUSTER_AGENT_LOG", "/var/log/fake-cluster-agent.log")


def log(msg):
    with open(LOG, "a") as f:
        f.write("{} {}\n".format(time.strftime("%H:%M:%S"), msg))


JOINS = {}


class Agent(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/cluster/api/v1.0/join":
            self.reply(404, {"error": "not found"})
            return
        try:
            n = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(min(n, 65536)))
            token, host = str(req["token"]), str(req["hostname"])
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": "bad request"})
            return
        r = subprocess.run(
            [MICROK8S, "fake-agent-join", host],
            input=token + "\n",
            text=True,
            capture_output=True,
            timeout=30,
        )
        # The token itself is never logged.
        if r.returncode == 0:
            JOINS[host] = JOINS.get(host, 0) + 1
            log("join from {} ({}): accepted (join {} from this host)".format(host, self.client_address[0], JOINS[host]))
            self.reply(200, {"hostname_override": host})
        else:
            log("join from {} ({}): invalid token".format(host, self.client_address[0]))
            self.reply(500, {"error": "Invalid token"})

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


def main():
    crt = os.path.join(SNAP_DATA, "certs", "server.crt")
    key = os.path.join(SNAP_DATA, "certs", "server.key")
    # The certificate appears when the stand-in snap installs MicroK8s,
    # during first boot; the NFS server never installs it.
    while not (os.path.exists(crt) and os.path.exists(key)):
        time.sleep(2)
    threading.Thread(target=launcher, daemon=True).start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", 25000), Agent)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    log("listening on 25000")
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
