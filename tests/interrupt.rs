//! No copy of the seeds (and so of the join token) outlives a run: SIGINT,
//! SIGTERM and SIGHUP remove the staging tree (and `--check`'s tree) before
//! the process dies of the signal; what SIGKILL leaves is removed by the
//! next run on the same output; two runs on one output take turns; a full
//! disk leaves no secrets or cluster file behind. Real signals, real
//! processes; the build is held at a known point by the test hook
//! `MICROSEED_TEST_PAUSE=staged` (once every machine's seed is staged).

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};

use common::{Scratch, bin, text};

/// A user's file that merely looks like a staging tree's name.
const USERS: &str = ".out.tmp-my-notes.txt";
const TOKEN: &str = "TestTokenForGoldenFiles0123456789abcdefABCDEF";

struct Running {
    child: Child,
    err: BufReader<ChildStderr>,
    seen: String,
}

impl Running {
    fn start(mut cmd: Command, pause: bool) -> Running {
        if pause {
            cmd.env("MICROSEED_TEST_PAUSE", "staged");
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn microseed");
        let err = BufReader::new(child.stderr.take().expect("stderr"));
        Running {
            child,
            err,
            seen: String::new(),
        }
    }

    /// Reads stderr until a line holds `what`; the run ending first fails.
    fn wait_for(&mut self, what: &str) {
        loop {
            let mut line = String::new();
            let n = self.err.read_line(&mut line).expect("read stderr");
            self.seen.push_str(&line);
            if n == 0 {
                panic!("run ended before {what:?}: {}", self.seen);
            }
            if line.contains(what) {
                return;
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    fn finish(mut self) -> (std::process::ExitStatus, String) {
        std::io::Read::read_to_string(&mut self.err, &mut self.seen).expect("read");
        let st = self.child.wait().expect("wait");
        (st, std::mem::take(&mut self.seen))
    }
}

/// A run the test gave up on (it failed first) is paused for good: kill it.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_cmd(sc: &Scratch, extra: &[&str]) -> Command {
    let mut c = bin();
    c.arg("build")
        .arg(sc.cluster())
        .arg("-o")
        .arg(sc.out())
        .args(extra);
    c
}

/// Staging and `--check` trees of `out` in the scratch directory.
fn leftovers(sc: &Scratch) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sc.dir.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.tmp-") || n.starts_with(".out.check-"))
        .filter(|n| n != USERS)
        .collect();
    v.sort();
    v
}

/// Every file under `dir` that holds the join token.
fn token_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let e = e.expect("entry");
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .map(|b| b.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()))
                .unwrap_or(false)
            {
                out.push(p);
            }
        }
    }
    out
}

/// The token is only where it belongs: secrets.yaml and the output.
fn token_only_in_secrets_and_out(sc: &Scratch) {
    let stray: Vec<PathBuf> = token_files(sc.dir.path())
        .into_iter()
        .filter(|p| p != &sc.dir.path().join("secrets.yaml") && !p.starts_with(sc.out()))
        .collect();
    assert!(stray.is_empty(), "copies of the join token left: {stray:?}");
}

fn sha256sum_ok(dir: &Path) {
    let o = Command::new("sha256sum")
        .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn each_terminating_signal_removes_the_staging_tree_before_exit() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        for previous in [false, true] {
            let sc = Scratch::example();
            let before = previous.then(|| {
                let o = sc.build(&["--format", "dir"]);
                assert!(o.status.success(), "{}", text(&o).1);
                common::tree(&sc.out())
            });
            let mut r = Running::start(build_cmd(&sc, &["--format", "dir,seed-img"]), true);
            r.wait_for("paused at staged");
            let left = leftovers(&sc);
            assert_eq!(left.len(), 1, "no staging tree while paused: {left:?}");
            assert!(
                !token_files(&sc.dir.path().join(&left[0])).is_empty(),
                "the staging tree holds no seed yet: the test proves nothing"
            );
            r.signal(sig);
            let (st, err) = r.finish();
            assert_eq!(st.signal(), Some(sig), "signal {sig}: {st:?} {err}");
            assert_eq!(leftovers(&sc), Vec::<String>::new(), "signal {sig}: {err}");
            token_only_in_secrets_and_out(&sc);
            match before {
                Some(b) => assert_eq!(common::tree(&sc.out()), b, "previous output changed"),
                None => assert!(!sc.out().exists(), "a half build was moved into place"),
            }
        }
    }
}

#[test]
fn a_signal_during_check_removes_its_temporary_tree() {
    let sc = Scratch::example();
    let o = sc.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    let before = common::tree(&sc.out());
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let mut r = Running::start(build_cmd(&sc, &["--check"]), true);
        r.wait_for("paused at staged");
        let left = leftovers(&sc);
        assert!(
            left.len() == 1 && left[0].starts_with(".out.check-"),
            "{left:?}"
        );
        r.signal(sig);
        let (st, err) = r.finish();
        assert_eq!(st.signal(), Some(sig), "{st:?} {err}");
        assert_eq!(leftovers(&sc), Vec::<String>::new());
        token_only_in_secrets_and_out(&sc);
        assert_eq!(common::tree(&sc.out()), before);
    }
}

#[test]
fn trees_left_by_sigkill_are_removed_by_the_next_run() {
    let sc = Scratch::example();
    let o = sc.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::write(sc.dir.path().join(USERS), "mine").expect("write");
    for (killed, next) in [
        (vec![], vec![]),
        (vec!["--check"], vec!["--check"]),
        (vec![], vec!["--check"]),
        (vec!["--check"], vec![]),
    ] {
        let mut r = Running::start(build_cmd(&sc, &killed), true);
        r.wait_for("paused at staged");
        r.signal(libc::SIGKILL);
        let (st, _) = r.finish();
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        // SIGKILL cannot be caught: the tree is there, with the token.
        let left = leftovers(&sc);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(!token_files(&sc.dir.path().join(&left[0])).is_empty());
        let o = build_cmd(&sc, &next).output().expect("run");
        let (_, err) = text(&o);
        assert!(o.status.success(), "{killed:?} then {next:?}: {err}");
        assert!(err.contains("left by an interrupted run"), "{err}");
        assert_eq!(leftovers(&sc), Vec::<String>::new(), "{err}");
        token_only_in_secrets_and_out(&sc);
        sha256sum_ok(&sc.out());
        assert!(sc.dir.path().join(USERS).exists(), "swept a user's file");
    }
}

#[test]
fn two_runs_on_one_output_take_turns_and_never_sweep_a_live_tree() {
    let sc = Scratch::example();
    let mut a = Running::start(build_cmd(&sc, &[]), true);
    a.wait_for("paused at staged");
    let a_tree = leftovers(&sc);
    assert_eq!(a_tree.len(), 1);
    let mut b = Running::start(build_cmd(&sc, &[]), false);
    b.wait_for("waiting for another microseed run");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        b.child.try_wait().expect("try_wait").is_none(),
        "b did not wait"
    );
    assert_eq!(leftovers(&sc), a_tree, "b touched a's live tree");
    assert!(!sc.out().exists());
    a.signal(libc::SIGKILL);
    let _ = a.finish();
    let (st, err) = b.finish();
    assert!(st.success(), "{err}");
    assert!(
        err.contains(&format!(
            "removed {}",
            sc.dir.path().join(&a_tree[0]).display()
        )),
        "{err}"
    );
    assert_eq!(leftovers(&sc), Vec::<String>::new());
    sha256sum_ok(&sc.out());

    // And without the hook: several builds at once all succeed, one at a time.
    let children: Vec<Child> = (0..4)
        .map(|_| {
            build_cmd(&sc, &["--format", "dir,seed-img"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", text(&o).1);
    }
    assert_eq!(leftovers(&sc), Vec::<String>::new());
    sha256sum_ok(&sc.out());
}

#[test]
fn a_full_disk_leaves_no_secrets_or_cluster_file_behind() {
    // A tiny tmpfs (private mount namespace), filled up; then space is
    // freed and the same commands must just work.
    let sc = Scratch::example();
    let script = r#"set -u
d="$1"; bin="$2"; cluster="$3"
fail() { echo "FAIL: $*"; exit 1; }
mount -t tmpfs -o size=64k tmpfs "$d/mnt" || fail mount
mkdir "$d/mnt/c"; cp "$cluster" "$d/mnt/c/cluster.yaml"
dd if=/dev/zero of="$d/mnt/fill" bs=4k 2>/dev/null
"$bin" build "$d/mnt/c/cluster.yaml" -o "$d/out" --format dir 2>"$d/err" && fail "build succeeded on a full disk"
grep -q "No space left" "$d/err" || fail "not ENOSPC: $(cat "$d/err")"
[ "$(ls -A "$d/mnt/c")" = cluster.yaml ] || fail "left: $(ls -A "$d/mnt/c")"
HOME="$d/nohome" "$bin" init "$d/mnt/i" 2>"$d/err" && fail "init succeeded on a full disk"
grep -q "No space left" "$d/err" || fail "init not ENOSPC: $(cat "$d/err")"
[ -z "$(ls -A "$d/mnt/i")" ] || fail "init left: $(ls -A "$d/mnt/i")"
rm "$d/mnt/fill"
"$bin" build "$d/mnt/c/cluster.yaml" -o "$d/out" --format dir >/dev/null 2>"$d/err" || fail "rebuild: $(cat "$d/err")"
[ "$(stat -c %a "$d/mnt/c/secrets.yaml")" = 600 ] || fail mode
grep -q '^join_token: [A-Za-z0-9]\{48\}$' "$d/mnt/c/secrets.yaml" || fail "secrets: $(cat "$d/mnt/c/secrets.yaml")"
HOME="$d/nohome" "$bin" init "$d/mnt/i" >/dev/null 2>"$d/err" || fail "re-init: $(cat "$d/err")"
[ "$(ls "$d/mnt/i" | tr '\n' ' ')" = "cluster.yaml secrets.yaml " ] || fail "init: $(ls -A "$d/mnt/i")"
echo ok
"#;
    std::fs::create_dir_all(sc.dir.path().join("mnt")).expect("mkdir");
    let d = sc.dir.path().to_str().expect("utf8");
    let o = common::in_mount_namespace(
        script,
        &[
            d,
            env!("CARGO_BIN_EXE_microseed"),
            sc.cluster().to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn a_signal_while_the_build_is_writing_leaves_nothing() {
    // No hook: a 400-machine build is interrupted while it writes seeds,
    // so the removal races the writer (which must not recreate the tree).
    let mut cluster = common::EXAMPLE.to_string();
    for i in 0..400 {
        cluster.push_str(&format!(
            "  - name: w{i}\n    role: worker\n    ip: 172.20.{}.{}\n",
            11 + i / 250,
            1 + i % 250
        ));
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let sc = Scratch::new(&cluster);
        let r = Running::start(build_cmd(&sc, &["--format", "dir,seed-img"]), false);
        let started = std::time::Instant::now();
        loop {
            let left = leftovers(&sc);
            if let Some(t) = left.first()
                && sc.dir.path().join(t).join("master/user-data").exists()
            {
                break;
            }
            assert!(started.elapsed().as_secs() < 60, "no staging tree appeared");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        r.signal(sig);
        let (st, err) = r.finish();
        assert_eq!(
            st.signal(),
            Some(sig),
            "the build was not interrupted (finished first?): {st:?} {err}"
        );
        assert_eq!(leftovers(&sc), Vec::<String>::new(), "{err}");
        assert!(!sc.out().exists());
        token_only_in_secrets_and_out(&sc);
    }
}

/// Temporary secrets files beside the cluster file.
fn secret_temps(sc: &Scratch) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sc.dir.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".secrets.yaml.tmp-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_run_stopped_while_creating_secrets_leaves_no_copy_of_the_token() {
    let sc = Scratch::example();
    let secrets = sc.dir.path().join("secrets.yaml");
    std::fs::remove_file(&secrets).expect("rm");
    let paused = |out: &str| {
        let mut c = bin();
        c.arg("build")
            .arg(sc.cluster())
            .arg("-o")
            .arg(sc.dir.path().join(out));
        c.env("MICROSEED_TEST_PAUSE", "secret-written");
        let mut r = Running::start(c, false);
        r.wait_for("paused at secret-written");
        r
    };
    // A signal removes the temporary file.
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let r = paused("out");
        let t = secret_temps(&sc);
        assert_eq!(t.len(), 1, "{t:?}");
        let body = std::fs::read_to_string(sc.dir.path().join(&t[0])).expect("read");
        assert!(body.contains("join_token: "), "{body}");
        r.signal(sig);
        let (st, err) = r.finish();
        assert_eq!(st.signal(), Some(sig), "{err}");
        assert_eq!(secret_temps(&sc), Vec::<String>::new());
        assert!(!secrets.exists());
    }
    // SIGKILL leaves it; the next run removes it; a run beside a live
    // writer leaves that one's file alone.
    let killed = paused("out");
    killed.signal(libc::SIGKILL);
    let _ = killed.finish();
    let dead = secret_temps(&sc);
    assert_eq!(dead.len(), 1);
    let live = paused("out2");
    let dead_path = sc.dir.path().join(&dead[0]);
    assert!(
        live.seen
            .contains(&format!("removed {}", dead_path.display())),
        "{}",
        live.seen
    );
    let live_seen = secret_temps(&sc);
    assert!(live_seen.len() == 1 && live_seen != dead, "{live_seen:?}");
    let o = sc.build(&["--format", "dir"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        secret_temps(&sc),
        live_seen,
        "the live writer's file was touched: {err}"
    );
    assert!(secrets.exists());
    live.signal(libc::SIGTERM);
    let _ = live.finish();
    assert_eq!(secret_temps(&sc), Vec::<String>::new());
    token_only_in_secrets_and_out(&sc);
}
