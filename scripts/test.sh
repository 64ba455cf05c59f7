#!/usr/bin/env bash
# The test command: set up (scripts/setup.sh), then `ruff check .`, `mypy`, the dependency
# audit (scripts/audit_deps.py check: requirements.lock against the committed PyPA
# advisories, fails on a known-vulnerable pin) and `pytest`, passing any arguments to pytest:
#
#   scripts/test.sh                                  everything
#   scripts/test.sh tests/integration -k influx      a subset
#
# Integration tests start real servers (tests/servers.py) on free loopback ports and write
# their PIDs into $GREENDC_TEST_RUNDIR; on exit, whatever the outcome, every PID still
# listed there is killed, so no server outlives a failed or interrupted run. All steps run;
# the exit code is that of the first step that failed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

"$REPO/scripts/setup.sh"

BIN="$REPO/.venv/bin"
GREENDC_TEST_RUNDIR="$(mktemp -d -t greendc-test.XXXXXX)"
export GREENDC_TEST_RUNDIR

child=0

stop_servers() {
    local pid_file pid pids=() waited=0
    for pid_file in "$GREENDC_TEST_RUNDIR"/*.pid; do
        [[ -e "$pid_file" ]] || continue
        pid="$(<"$pid_file")"
        if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            echo "test.sh: stopping leftover server $(basename "$pid_file" .pid) (PID $pid)" >&2
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    # Give them 10 s to shut down cleanly, then SIGKILL whatever is left.
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$GREENDC_TEST_RUNDIR"
}

on_signal() {
    local code=$1
    if ((child > 0)); then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit "$code"
}

trap stop_servers EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

status=0

# Each step runs in the background and is waited for, so a signal to this script is handled
# at once (bash defers traps while a foreground command runs) and the step is stopped too.
run_step() {
    local name=$1 rc=0
    shift
    echo "==> $name: $*" >&2
    "$@" &
    child=$!
    wait "$child" || rc=$?
    child=0
    if ((rc != 0)); then
        echo "==> $name FAILED (exit $rc)" >&2
        if ((status == 0)); then
            status=$rc
        fi
    fi
}

run_step ruff "$BIN/ruff" check .
run_step mypy "$BIN/mypy"
run_step audit "$BIN/python" "$REPO/scripts/audit_deps.py" check
run_step pytest "$BIN/pytest" "$@"

if ((status == 0)); then
    echo "==> all steps passed" >&2
fi
exit "$status"
