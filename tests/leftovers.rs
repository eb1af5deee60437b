//! Nothing a test starts may outlive it. `common::Scratch` (and the other
//! per-test directories that run servers) fail the test on drop when a
//! process still names the directory, and kill it; scripts/test.sh checks
//! the whole run the same way after `cargo test` (tests/test_scripts.rs).

use crate::common;

use std::process::{Command, Stdio};

use common::Scratch;

/// A process left behind (orphaned, naming the test's directory) fails the
/// test when its directory goes away, and is killed; a test failing
/// already is not failed twice, but its process is killed all the same.
#[test]
fn a_process_a_test_leaves_running_fails_it_and_is_killed() {
    for failing_already in [false, true] {
        let sc = Scratch::example();
        let dir = sc.dir.path().to_path_buf();
        let o = Command::new("sh")
            .args(["-c", "(sh -c 'sleep 600; :' \"$1\" &)", "sh"])
            .arg(sc.cluster())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("sh");
        assert!(o.success());
        // The shell naming the directory, and the sleep it started.
        let started = std::time::Instant::now();
        let mut left = common::processes_using(&dir);
        while left.len() < 2 && started.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            left = common::processes_using(&dir);
        }
        assert_eq!(left.len(), 2, "{left:?}");
        let pids: Vec<i32> = left.iter().map(|l| l.pid).collect();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _sc = sc;
            if failing_already {
                panic!("the test's own failure");
            }
        }));
        let msg = r
            .err()
            .and_then(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            })
            .unwrap_or_default();
        if failing_already {
            assert_eq!(msg, "the test's own failure");
        } else {
            assert!(
                msg.contains("the test left 2 process(es) running")
                    && pids.iter().all(|p| msg.contains(&format!("pid {p} ")))
                    && msg.contains("sleep 600"),
                "{msg}"
            );
        }
        // Gone (a zombie at most, until init reaps it).
        for pid in pids {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(cmdline.is_empty(), "pid {pid} still runs");
        }
    }
}
