#!/usr/bin/env bash
# Prepare this checkout to run greendc and its tests. Safe to run again: it only does what is
# missing.
#
#   scripts/setup.sh               as root: install the Debian servers and programs the
#                                  integration tests use (if any binary is missing); then
#                                  create .venv and install greendc with its test extras
#   scripts/setup.sh --no-servers  only the virtual environment (enough for `greendc demo`)
#
# The Debian packages are installed WITHOUT starting their services: the tests start their
# own servers on free loopback ports and a packaged daemon on a default port would only get
# in the way.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

DEBIAN_PACKAGES=(
    mosquitto mosquitto-clients influxdb influxdb-client prometheus victoria-metrics
    prometheus-alertmanager docker-compose openssl
)
# The programs the carbon report is opened in by tests/integration/test_report_programs.py
# (headless Chromium, LibreOffice Calc, poppler), without their recommends (no Java, no
# desktop): about 700 MB.
REPORT_PACKAGES=(chromium libreoffice-calc libreoffice-core poppler-utils fonts-dejavu-core)
# One binary per package above; a missing one means the package set must be installed.
REQUIRED_BINARIES=(
    mosquitto mosquitto_pub influxd influx prometheus promtool victoria-metrics
    amtool docker-compose openssl chromium soffice pdftoppm
)

with_servers=1
for arg in "$@"; do
    case "$arg" in
        --no-servers) with_servers=0 ;;
        -h | --help)
            sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "setup.sh: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

log() { echo "setup: $*" >&2; }

# mosquitto lives in /usr/sbin, which is not on an ordinary user's PATH on Debian.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing_binaries() {
    local binary
    for binary in "${REQUIRED_BINARIES[@]}"; do
        command -v "$binary" >/dev/null 2>&1 || echo "$binary"
    done
}

install_debian_packages() {
    local extra=()
    # Debian's python3 lacks ensurepip (so `python3 -m venv` fails) until python3-venv is in.
    python3 -c 'import ensurepip' >/dev/null 2>&1 || extra+=(python3-venv)

    # Exit code 101 from policy-rc.d tells invoke-rc.d and deb-systemd-invoke not to start
    # the services the packages ship. Keep an existing policy untouched.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y "${DEBIAN_PACKAGES[@]}" "${extra[@]}" &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                "${REPORT_PACKAGES[@]}"
    } || rc=$?
    if ((created_policy)); then
        rm -f "$policy"
    fi
    return "$rc"
}

if ((with_servers)); then
    mapfile -t missing < <(missing_binaries)
    if ((${#missing[@]} == 0)); then
        log "Debian servers present"
    elif ((EUID == 0)); then
        log "missing: ${missing[*]}; installing Debian packages (services are not started)"
        install_debian_packages
        mapfile -t missing < <(missing_binaries)
        if ((${#missing[@]} > 0)); then
            log "still missing after apt-get install: ${missing[*]}"
            exit 1
        fi
    else
        log "missing: ${missing[*]}; run 'sudo scripts/setup.sh' to install them" \
            "(integration tests FAIL without them)"
    fi
fi

# Debian's python3 lacks ensurepip (so `python3 -m venv` fails) until python3-venv is in;
# the demo needs no server but does need a virtual environment.
if [[ ! -x "$VENV/bin/python" ]] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    if ((EUID == 0)); then
        log "installing python3-venv (needed to create $VENV)"
        DEBIAN_FRONTEND=noninteractive apt-get update &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
    else
        log "python3 cannot create virtual environments: run 'sudo apt-get install python3-venv'"
        exit 1
    fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi

# Dependencies come from the lock file (requirements.lock: every package pinned, runtime and
# test extras; scripts/test.sh audits it), then greendc itself, editable, without resolving
# anything more. Reinstall only when pyproject.toml or the lock changed: code changes need no
# reinstall.
stamp="$VENV/.greendc-install-stamp"
wanted="$(cat "$REPO/pyproject.toml" "$REPO/requirements.lock" | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
    log "installing the locked dependencies (requirements.lock) and greendc (editable) into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$REPO/requirements.lock"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        -e "$REPO[test]"
    echo "$wanted" >"$stamp"
else
    log "greendc already installed in $VENV"
fi
