#!/usr/bin/python3
"""leftovers.py: the processes a test run left running.

  leftovers.py snapshot FILE RUN_TMP CHECKOUT   record what is there now
  leftovers.py check FILE RUN_TMP CHECKOUT      list what is new; kill it
                                                (SIGKILL); exit 1 if any

scripts/test.sh runs `cargo test` with TMPDIR set to RUN_TMP, a directory
of that run's own, from CHECKOUT (the tests' working directory). So once
the run is over, any process naming RUN_TMP (its command line holds it,
or its working directory is in it) was left by a test, and so is an orphan
(parent PID 1) working in CHECKOUT, as a server a test backgrounds would
be. Other test runs on the same machine (other checkouts, other TMPDIRs)
name neither. Processes there before the run (FILE: pid and start time,
so a reused pid is not taken for an old one), this script and the
processes it descends from are never counted; what a counted process
started is counted (and killed) with it.
"""
import os
import signal
import sys


def stat(pid):
    """(ppid, start time) from /proc/PID/stat; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself hold ") ".
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), fields[19]


def ancestors():
    """This process and every process it descends from."""
    out, pid = set(), os.getpid()
    while pid > 0 and pid not in out:
        out.add(pid)
        st = stat(pid)
        pid = st[0] if st else 0
    return out


def under(path, d):
    return path == d or path.startswith(d.rstrip("/") + "/")


def naming(run_tmp, checkout):
    """{(pid, start): (ppid, command line)} of the processes that count."""
    tmps = {run_tmp, os.path.realpath(run_tmp)}
    trees = {checkout, os.path.realpath(checkout)}
    skip = ancestors()
    found, parent = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        pid = int(name)
        st = stat(pid)
        if st:
            parent[pid] = st[0]
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read()
        except OSError:
            continue
        if not argv:  # a zombie, or a kernel thread
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        cmd = argv.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
        st = stat(pid)
        if not st:
            continue
        hit = any(d.encode() in argv or under(cwd, d) for d in tmps) or (
            st[0] == 1 and any(under(cwd, d) for d in trees)
        )
        if hit:
            found[(pid, st[1])] = (st[0], cmd)
    # What those started is left running too, whatever it names.
    hits = {pid for pid, _ in found}
    for pid in parent:
        p, seen = parent[pid], set()
        while p in parent and p not in hits and p not in seen:
            seen.add(p)
            p = parent[p]
        st = stat(pid)
        if p in hits and pid not in hits and st:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read()
            except OSError:
                continue
            if argv:
                cmd = argv.rstrip(b"\0").replace(b"\0", b" ")
                found[(pid, st[1])] = (st[0], cmd.decode("utf-8", "replace"))
    return found


def main(argv):
    if len(argv) != 4 or argv[0] not in ("snapshot", "check"):
        sys.stderr.write(__doc__)
        return 2
    verb, state, run_tmp, checkout = argv
    if verb == "snapshot":
        with open(state, "w") as f:
            for pid, start in naming(run_tmp, checkout):
                f.write(f"{pid} {start}\n")
        return 0
    with open(state) as f:
        before = {tuple(line.split()) for line in f if line.strip()}
    left = {
        k: v
        for k, v in naming(run_tmp, checkout).items()
        if (str(k[0]), k[1]) not in before
    }
    if not left:
        return 0
    print(f"{len(left)} process(es) left running by the tests (now killed):")
    print(f"{'PID':>7} {'PPID':>7} CMD")
    for (pid, _), (ppid, cmd) in sorted(left.items()):
        print(f"{pid:>7} {ppid:>7} {cmd}")
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
