#!/bin/bash
# Runs inside the test VM from early boot (installed as
# /usr/local/sbin/microseed-test-status-watch by recipe-bookworm-vm.sh, started
# by microseed-test-status-watch.service, wanted by multi-user.target): keeps
# the first microseed-status snapshot that shows a failing step in
# /run/microseed-test/status-while-failing, for vm-report.sh.
# Why not the report alone: the steps start from runcmd, inside cloud-final,
# and the report only after cloud-final. On a loaded host the rest of
# cloud-final can outlast a step's whole failure window (10 s before the
# first retry), so a snapshot taken by the report may never see the failure
# the stand-in microk8s injected. This watcher is already polling when the
# steps start. It stops at the first failing snapshot, at convergence, or
# after 30 minutes.
# A failing snapshot is one where a step's row says "failed", not merely
# one that mentions a failure: a step records its error before it updates
# its row, so for a moment a row still says "running: attempt 1" above
# that attempt's "last error" lines (a CI run kept such a snapshot).
out=/run/microseed-test/status-while-failing
status=/usr/local/sbin/microseed-status
mkdir -p "${out%/*}"
end=$((SECONDS + 1800))
while [ "$SECONDS" -lt "$end" ]; do
    if [ -x "$status" ]; then
        snap="$("$status" 2>&1)" && exit 0
        if grep -qE '^[^ ]+ +failed' <<<"$snap"; then
            printf '%s\n' "$snap" >"$out.new" && mv -f "$out.new" "$out"
            exit 0
        fi
    fi
    sleep 1
done
