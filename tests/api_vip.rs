//! `microk8s.api_vip` (docs/ha.md), in front of its real consumers:
//! - keepalived itself: each master's rendered `keepalived.conf`, made live
//!   by the master's own rendered `microseed-api-vip` (which finds the
//!   interface), passes `keepalived --config-test`, then three keepalived
//!   run in three network namespaces of the test's own on one bridge, with
//!   the rendered health check asking a small HTTPS listener on each
//!   master's 127.0.0.1:16443. The VIP lands on exactly one master, moves
//!   when that master's API server stops answering, stays where it is when
//!   it comes back (nopreempt), and moves again when keepalived stops.
//!   A client on the bridge reaches the holder's "API server" through it.
//! - openssl: `microseed-api-san` edits an upstream csr.conf.template, and
//!   the certificate MicroK8s would render from it names the VIP;
//! - the launch configuration carries it as `extraSANs`;
//! - ufw takes the VRRP rules (`--dry-run`).
//!
//! Nothing leaves the namespaces; their PID 1 takes keepalived and the
//! listeners down with it.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Scratch, extract_write_files, first_boot, shq, text};

const HA: &str = include_str!("../examples/ha/cluster.yaml");
const VIP: &str = "172.20.10.20";
const MASTERS: [(&str, &str); 3] = [
    ("master-1", "172.20.10.11"),
    ("master-2", "172.20.10.12"),
    ("master-3", "172.20.10.13"),
];

/// The HA example with `api_vip` on `channel`.
fn with_vip(channel: &str) -> String {
    let c = HA.replace(
        "  addons: [dns, helm3]\n",
        &format!("  addons: [dns, helm3]\n  api_vip: {VIP}\n"),
    );
    assert!(
        c.contains("api_vip"),
        "the HA example's microk8s section moved"
    );
    c.replace("channel: 1.35/stable", &format!("channel: {channel}"))
}

/// The cluster built, each master's first-boot files under `roots/NAME`.
fn built(channel: &str) -> Scratch {
    let s = Scratch::new(&with_vip(channel));
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    for (name, _) in MASTERS {
        extract_write_files(&first_boot(&s.out(), name), &root(&s, name));
    }
    s
}

fn root(s: &Scratch, name: &str) -> PathBuf {
    s.dir.path().join("roots").join(name)
}

fn file(s: &Scratch, name: &str, path: &str) -> PathBuf {
    root(s, name).join(path.trim_start_matches('/'))
}

/// Runs as PID 1 of a network, mount and PID namespace of its own: a
/// bridge, one namespace per master on it (its address on eth0), a client
/// address on the bridge. Then per master: the rendered microseed-api-vip
/// (a stand-in systemctl records it), keepalived --config-test on what it
/// wrote, the listener, keepalived. Prints `holders T NAMES` lines as the
/// VIP moves, and the client's answers through the VIP.
const LAB: &str = r#"
set -euo pipefail
dir=$1 vip=$2
shift 2
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /usr/local/lib
mkdir -p /usr/local/lib/microseed
ip link set lo up
ip link add br0 type bridge
ip link set br0 up
ip addr add 172.20.10.30/20 dev br0
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=apiserver -days 1 \
    -keyout "$dir/lab/key.pem" -out "$dir/lab/cert.pem" 2>/dev/null
names=()
for m in "$@"; do
    name=${m%%=*} ip=${m#*=}
    names+=("$name")
    ns=$name
    ip netns add "$ns"
    ip link add "v-$name" type veth peer name eth0 netns "$ns"
    ip link set "v-$name" master br0 up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$ip/20" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    r=$dir/roots/$name
    # The health check where keepalived.conf names it (root-only dirs:
    # keepalived's script security checks them).
    install -m 0755 "$r/usr/local/lib/microseed/microseed-apiserver-check" \
        "/usr/local/lib/microseed/microseed-apiserver-check"
    # microseed-api-vip waits for MicroK8s' no-cert-reissue lock.
    mkdir -p "$dir/lab/$name/snap/var/lock"
    if MICROSEED_SNAP_DATA=$dir/lab/$name/snap \
        MICROSEED_KEEPALIVED_STAGED=$r/etc/microseed/keepalived.conf \
        MICROSEED_KEEPALIVED_CONF=$dir/lab/$name/keepalived.conf \
        PATH=$dir/lab/bin:$PATH ip netns exec "$ns" bash "$r/usr/local/sbin/microseed-api-vip"; then
        echo "api-vip without the lock: $name"; exit 1
    fi
    touch "$dir/lab/$name/snap/var/lock/no-cert-reissue"
    MICROSEED_SNAP_DATA=$dir/lab/$name/snap \
        MICROSEED_KEEPALIVED_STAGED=$r/etc/microseed/keepalived.conf \
        MICROSEED_KEEPALIVED_CONF=$dir/lab/$name/keepalived.conf \
        PATH=$dir/lab/bin:$PATH ip netns exec "$ns" bash "$r/usr/local/sbin/microseed-api-vip"
    echo "mode $name $(stat -c %a "$dir/lab/$name/keepalived.conf")"
    ip netns exec "$ns" keepalived --config-test -f "$dir/lab/$name/keepalived.conf" \
        >"$dir/lab/$name/config-test.log" 2>&1 \
        || { echo "config-test failed: $name"; cat "$dir/lab/$name/config-test.log"; exit 1; }
done
listen() {
    ip netns exec "$1" /usr/bin/python3 "$dir/lab/listener.py" "$1" \
        "$dir/lab/cert.pem" "$dir/lab/key.pem" >"$dir/lab/$1/listener.log" 2>&1 &
    echo $! >"$dir/lab/$1/listener.pid"
}
keepalive() {
    ip netns exec "$1" keepalived -n -l -D -f "$dir/lab/$1/keepalived.conf" \
        -p "$dir/lab/$1/keepalived.pid" -r "$dir/lab/$1/vrrp.pid" -c "$dir/lab/$1/checkers.pid" \
        >>"$dir/lab/$1/keepalived.log" 2>&1 &
    echo $! >"$dir/lab/$1/keepalived.pid.main"
}
holders() {
    local h=()
    for n in "${names[@]}"; do
        if ip netns exec "$n" ip -o -4 addr show dev eth0 | grep -q " $vip/"; then h+=("$n"); fi
    done
    echo "${h[*]:-}"
}
# Waits up to $1 s until the holders are exactly $2 (a name, or "any" for
# any one master); prints the holders and how long it took.
await() {
    local limit=$1 want=$2 t=0 h
    while :; do
        h=$(holders)
        if [ -n "$h" ] && [[ "$h" != *" "* ]] && { [ "$want" = any ] || [ "$h" = "$want" ]; }; then
            echo "holders $t $h"; return 0
        fi
        if [ "$t" -ge "$limit" ]; then echo "holders-timeout $t [$h]"; return 1; fi
        sleep 1; t=$((t + 1))
    done
}
# Waits up to $2 s until exactly one master other than $1 holds the VIP.
await_move() {
    local from=$1 limit=$2 t=0 h
    while :; do
        h=$(holders)
        if [ -n "$h" ] && [[ "$h" != *" "* ]] && [ "$h" != "$from" ]; then
            echo "holders $t $h"; return 0
        fi
        if [ "$t" -ge "$limit" ]; then echo "holders-timeout $t [$h]"; return 1; fi
        sleep 1; t=$((t + 1))
    done
}
via_vip() {
    curl -sk --max-time 3 "https://$vip:16443/livez" || echo "no answer"
}
for n in "${names[@]}"; do listen "$n"; done
sleep 1
for n in "${names[@]}"; do keepalive "$n"; done
await 30 any
first=$(holders)
echo "answer $(via_vip)"
# Its API server stops answering: the health check releases the VIP.
kill "$(cat "$dir/lab/$first/listener.pid")"
await_move "$first" 20
second=$(holders)
echo "answer $(via_vip)"
# It answers again: the VIP stays where it is (nopreempt).
listen "$first"
sleep 10
echo "after-return $(holders)"
# keepalived stops on the holder (systemctl stop): the VIP moves again.
kill -TERM "$(cat "$dir/lab/$second/keepalived.pid.main")"
await_move "$second" 20
echo "answer $(via_vip)"
"#;

/// The stand-in API server: answers `GET /livez` with its master's name.
const LISTENER: &str = r#"
import http.server, ssl, sys
name, cert, key = sys.argv[1:4]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200 if self.path == "/livez" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("0.0.0.0", 16443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

/// The VIP lands on exactly one master, moves (within 20 s) when its API
/// server stops answering, does not move back when it answers again, and
/// moves when keepalived stops on the holder: with the rendered configs
/// and scripts, under the real keepalived.
#[test]
fn the_vip_lands_on_one_master_and_moves_when_its_api_server_or_keepalived_stops() {
    if common::run("keepalived", &["--version"])
        .status
        .code()
        .is_none()
    {
        panic!("keepalived is needed for this test (scripts/deps/core.apt)");
    }
    let s = built("1.35/stable");
    let dir = s.dir.path();
    let lab = dir.join("lab");
    std::fs::create_dir_all(lab.join("bin")).expect("lab");
    for (name, _) in MASTERS {
        std::fs::create_dir_all(lab.join(name)).expect("lab dir");
    }
    std::fs::write(lab.join("listener.py"), LISTENER).expect("listener");
    // systemctl: microseed-api-vip enables and restarts keepalived; the
    // lab starts keepalived itself, per namespace.
    let fake = lab.join("bin/systemctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >>{}\n",
            shq(lab.join("systemctl.calls"))
        ),
    )
    .expect("fake systemctl");
    common::make_executable(&fake);
    let d = dir.to_str().expect("utf-8 dir");
    let mut args = vec![
        "--mount",
        "--propagation",
        "private",
        "--net",
        "--pid",
        "--mount-proc",
        "--fork",
        "--kill-child",
        "bash",
        "-c",
        LAB,
        "lab",
        d,
        VIP,
    ];
    let masters: Vec<String> = MASTERS.iter().map(|(n, ip)| format!("{n}={ip}")).collect();
    args.extend(masters.iter().map(String::as_str));
    let o = common::unshare(&args).output().expect("unshare");
    let (out, err) = text(&o);
    let logs: String = MASTERS
        .iter()
        .map(|(n, _)| {
            let log =
                std::fs::read_to_string(lab.join(n).join("keepalived.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            format!(
                "--- {n}\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect();
    assert!(o.status.success(), "lab failed\n{out}\n{err}\n{logs}");
    // How long each move took, for the record (`--nocapture`).
    eprintln!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    let holders: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("holders "))
        .map(|l| l.split_once(' ').expect("t name").1)
        .collect();
    let answers: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("answer "))
        .collect();
    assert_eq!(holders.len(), 3, "{out}\n{logs}");
    let (first, second, third) = (holders[0], holders[1], holders[2]);
    // Exactly one master at a time (`await` checks every holder list);
    // which one first depends on whose health check passed first, since
    // every master starts as a backup.
    assert!(first.starts_with("master-"), "{out}\n{logs}");
    assert_ne!(second, first, "{out}");
    assert_ne!(third, second, "{out}");
    // The client on the bridge reached whichever master held the VIP.
    assert_eq!(answers, [first, second, third], "{out}");
    assert!(
        lines.contains(&format!("after-return {second}").as_str()),
        "the VIP moved back to a returning master: {out}\n{logs}"
    );
    for (name, _) in MASTERS {
        assert!(
            lines.contains(&format!("mode {name} 600").as_str()),
            "keepalived.conf not owner-only: {out}"
        );
    }
    let calls = std::fs::read_to_string(lab.join("systemctl.calls")).expect("systemctl calls");
    assert_eq!(
        calls,
        "enable keepalived\nrestart keepalived\n".repeat(3),
        "microseed-api-vip ran before the lock, or not at all"
    );
    common::assert_nothing_left(dir);
}

/// The VIP reaches each master's certificate before it joins: on 1.27+ the
/// launch configuration's extraSANs (the only key, with several masters:
/// no persistent token before the master belongs to the cluster); on
/// 1.23-1.26 microseed-api-san adds it to MicroK8s' csr.conf.template, and
/// the certificate openssl makes from the template as MicroK8s renders it
/// names the VIP. microseed-api-san succeeds only once the certificate does.
#[test]
fn the_vip_is_in_extra_sans_and_the_csr_template_and_api_san_waits_for_the_certificate() {
    let s = built("1.35/stable");
    let launch =
        std::fs::read_to_string(file(&s, "master-2", "/etc/microk8s.yaml")).expect("launch");
    let doc = common::pyyaml(&file(&s, "master-2", "/etc/microk8s.yaml"));
    assert_eq!(
        doc,
        serde_json::json!({"version": "0.1.0", "extraSANs": [VIP]}),
        "{launch}"
    );

    let s = built("1.26/stable");
    assert!(
        !file(&s, "master-2", "/etc/microk8s.yaml").exists(),
        "1.26 has no launch configuration"
    );
    let snap = s.dir.path().join("snap");
    let certs = snap.join("certs");
    std::fs::create_dir_all(&certs).expect("certs");
    // canonical/microk8s 1.26 microk8s-resources/certs/csr.conf.template.
    std::fs::write(certs.join("csr.conf.template"), CSR_TEMPLATE).expect("template");
    let script = file(&s, "master-2", "/usr/local/sbin/microseed-api-san");
    let run = || {
        std::process::Command::new("bash")
            .arg(&script)
            .env("MICROSEED_SNAP_DATA", &snap)
            .output()
            .expect("bash")
    };
    // A certificate without the VIP, as MicroK8s made it at install.
    render_and_sign(&certs, CSR_TEMPLATE);
    let o = run();
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let template = std::fs::read_to_string(certs.join("csr.conf.template")).expect("template");
    assert!(
        template.contains(&format!("IP.90 = {VIP}\n#MOREIPS\n")),
        "{template}"
    );
    // Again: the line is not added twice.
    let o = run();
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert_eq!(
        std::fs::read_to_string(certs.join("csr.conf.template")).expect("template"),
        template
    );
    // MicroK8s' apiservice-kicker renders the template and reissues.
    render_and_sign(&certs, &template);
    let pem = common::run(
        "openssl",
        &[
            "x509",
            "-in",
            certs.join("server.crt").to_str().expect("utf-8"),
            "-noout",
            "-text",
        ],
    );
    let pem = text(&pem).0;
    assert!(pem.contains(&format!("IP Address:{VIP}")), "{pem}");
    assert!(pem.contains("IP Address:172.20.10.12"), "{pem}");
    let o = run();
    assert!(o.status.success(), "{:?}", text(&o));
}

/// MicroK8s' own template (identical on 1.20, 1.23, 1.26 and 1.28).
const CSR_TEMPLATE: &str = "[ req ]
default_bits = 2048
prompt = no
default_md = sha256
req_extensions = req_ext
distinguished_name = dn

[ dn ]
C = GB
ST = Canonical
L = Canonical
O = Canonical
OU = Canonical
CN = 127.0.0.1

[ req_ext ]
subjectAltName = @alt_names

[ alt_names ]
DNS.1 = kubernetes
DNS.2 = kubernetes.default
DNS.3 = kubernetes.default.svc
DNS.4 = kubernetes.default.svc.cluster
DNS.5 = kubernetes.default.svc.cluster.local
IP.1 = 127.0.0.1
IP.2 = 10.152.183.1
#MOREIPS

[ v3_ext ]
authorityKeyIdentifier=keyid,issuer:always
basicConstraints=CA:FALSE
keyUsage=keyEncipherment,dataEncipherment,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=@alt_names
";

/// What MicroK8s' `render_csr_conf` and `gen_server_cert` do (1.26
/// `actions/common/utils.sh`): the host's addresses from IP.3 in place of
/// #MOREIPS, then a server certificate signed by the CA with `v3_ext`.
fn render_and_sign(certs: &Path, template: &str) {
    let rendered = template.replace("#MOREIPS", "IP.3 = 172.20.10.12");
    std::fs::write(certs.join("csr.conf"), rendered).expect("csr.conf");
    let c = |f: &str| certs.join(f).to_str().expect("utf-8").to_string();
    if !certs.join("ca.key").exists() {
        let o = common::run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=10.152.183.1",
                "-days",
                "1",
                "-keyout",
                &c("ca.key"),
                "-out",
                &c("ca.crt"),
            ],
        );
        assert!(o.status.success(), "{:?}", text(&o));
        let o = common::run("openssl", &["genrsa", "-out", &c("server.key"), "2048"]);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let o = common::run(
        "openssl",
        &[
            "req",
            "-new",
            "-sha256",
            "-key",
            &c("server.key"),
            "-out",
            &c("server.csr"),
            "-config",
            &c("csr.conf"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = common::run(
        "openssl",
        &[
            "x509",
            "-req",
            "-sha256",
            "-in",
            &c("server.csr"),
            "-CA",
            &c("ca.crt"),
            "-CAkey",
            &c("ca.key"),
            "-CAcreateserial",
            "-out",
            &c("server.crt"),
            "-days",
            "1",
            "-extensions",
            "v3_ext",
            "-extfile",
            &c("csr.conf"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
}

/// Every script the VIP adds, in front of shellcheck, on a master of each
/// mechanism (extraSANs on 1.35, the template edit on 1.26).
#[test]
fn the_vip_scripts_pass_shellcheck() {
    for channel in ["1.35/stable", "1.26/stable"] {
        let s = built(channel);
        for (name, _) in MASTERS {
            for path in [
                "/usr/local/sbin/microseed-api-san",
                "/usr/local/sbin/microseed-api-vip",
                "/usr/local/sbin/microseed-firewall",
                "/usr/local/lib/microseed/microseed-apiserver-check",
            ] {
                let f = file(&s, name, path);
                let o = common::run("shellcheck", &[f.to_str().expect("utf-8")]);
                assert!(
                    o.status.success(),
                    "{channel} {name} {path}: {}",
                    text(&o).0
                );
            }
        }
    }
}

/// Each master takes VRRP from the other masters only, and ufw accepts the
/// rules (the firewall script's ufw lines under `ufw --dry-run`).
#[test]
fn masters_take_vrrp_from_the_other_masters_and_ufw_accepts_the_rules() {
    let s = built("1.35/stable");
    for (name, ip) in MASTERS {
        let fw = std::fs::read_to_string(file(&s, name, "/usr/local/sbin/microseed-firewall"))
            .expect("firewall");
        let vrrp: Vec<&str> = fw.lines().filter(|l| l.contains("proto vrrp")).collect();
        let others: Vec<String> = MASTERS
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(_, o)| format!("ufw allow proto vrrp from {o} comment 'VRRP, the API VIP'"))
            .collect();
        assert_eq!(vrrp, others, "{name} ({ip})");
        for rule in vrrp {
            let argv: Vec<&str> = rule
                .trim_start_matches("ufw ")
                .split(" comment ")
                .next()
                .expect("rule")
                .split(' ')
                .collect();
            let mut a = vec!["--net", "ufw", "--dry-run"];
            a.extend(argv);
            let o = common::unshare(&a).output().expect("ufw");
            let (out, err) = text(&o);
            assert!(o.status.success(), "{rule}: {out}{err}");
            assert!(out.contains("allow vrrp"), "{rule}: {out}");
        }
    }
    // Workers and the NFS server run no keepalived and take no VRRP.
    for name in ["worker-1", "nfs"] {
        let cc = first_boot(&s.out(), name);
        let fw = cc["write_files"]
            .as_array()
            .expect("files")
            .iter()
            .find(|f| f["path"] == "/usr/local/sbin/microseed-firewall")
            .expect("firewall")["content"]
            .as_str()
            .expect("text")
            .to_string();
        assert!(!fw.contains("vrrp"), "{name}: {fw}");
    }
}

/// The README's kubeconfig command, as written, points `microk8s config`'s
/// output (1.28 `client.config.template`, its address put in by
/// `microk8s-config.wrapper`) at the VIP.
#[test]
fn the_readmes_kubeconfig_command_points_at_the_vip() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).expect("README");
    let line = readme
        .lines()
        .find(|l| l.starts_with("ssh master-1 sudo microk8s config | sed "))
        .expect("the README's kubeconfig command");
    let expr = line
        .split_once("sed '")
        .and_then(|(_, r)| r.split_once('\''))
        .expect("a quoted sed expression")
        .0
        .replace("ADDRESS", VIP);
    let config = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: CADATA\n    server: https://172.20.10.12:16443\n  name: microk8s-cluster\n";
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("config");
    std::fs::write(&f, config).expect("config");
    let o = common::run("sed", &[&expr, f.to_str().expect("utf-8")]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert_eq!(
        out,
        config.replace(
            "https://172.20.10.12:16443",
            &format!("https://{VIP}:16443")
        )
    );
}

/// `cluster` with `api_vip: VALUE` builds to exit 2 naming the file, the
/// line and column of the value, the field and `says`; nothing written.
fn refuses(cluster: &str, value: &str, says: &str) {
    let c = cluster.replace(
        "  addons: [dns, helm3]\n",
        &format!("  addons: [dns, helm3]\n  api_vip: {value}\n"),
    );
    assert!(c.contains("api_vip"), "no addons line to put api_vip after");
    let line = c
        .lines()
        .position(|l| l.starts_with("  api_vip: "))
        .expect("api_vip line")
        + 1;
    let s = Scratch::new(&c);
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{value}: {err}");
    let at = format!(
        "{}:{line}:12: error: microk8s.api_vip: ",
        s.cluster().display()
    );
    assert!(err.contains(&at), "{value}: no {at:?} in {err}");
    assert!(err.contains(says), "{value}: no {says:?} in {err}");
    assert!(
        !s.out().exists(),
        "{value}: output written despite the error"
    );
}

/// Every address the VIP must not be, and the clusters it cannot serve,
/// are refused at the value with the reason.
#[test]
fn an_api_vip_that_is_not_a_free_subnet_address_or_lacks_masters_is_refused() {
    let ha = with_vip("1.35/stable").replace(&format!("  api_vip: {VIP}\n"), "");
    refuses(&ha, "172.20.10", "expected an IPv4 address");
    refuses(&ha, "10.0.0.5", "outside the subnet 172.20.0.0/20");
    refuses(&ha, "172.20.15.255", "the subnet's broadcast address");
    refuses(&ha, "172.20.0.0", "the subnet's network address");
    refuses(&ha, "172.20.0.1", "is the gateway's address");
    refuses(&ha, "172.20.10.12", "is machine \"master-2\"'s address");
    refuses(
        &ha.replace("dns: [8.8.8.8, 8.8.4.4]", "dns: [172.20.10.53]"),
        "172.20.10.53",
        "is a DNS server",
    );
    refuses(
        &ha.replace("channel: 1.35/stable", "channel: 1.22/stable"),
        VIP,
        "expected microk8s.channel 1.23 or later",
    );
    // One master: nowhere to move the address.
    refuses(common::EXAMPLE, VIP, "needs 3 or 5");
}
