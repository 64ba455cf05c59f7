#!/usr/bin/env bash
# The README's first command: set up a virtual environment (no servers needed) and run
# `greendc demo` on embedded defaults. Arguments go to `greendc demo` (try --help).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
"$REPO/scripts/setup.sh" --no-servers
exec "$REPO/.venv/bin/greendc" demo "$@"
