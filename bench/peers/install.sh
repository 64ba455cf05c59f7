#!/bin/sh
# Install the peers greendc is compared with into bench/.work (git-ignored).
# mqtt-exporter 1.12.1 (PyPI) in its own venv; Node-RED 4 + node-red-contrib-influxdb 0.7.0 (npm).
# py-spy goes into the same venv, for profiling the agent.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
work="$here/.work"
mkdir -p "$work/node-red"
if [ ! -x "$work/venv-mqtt-exporter/bin/mqtt-exporter" ]; then
    python3 -m venv "$work/venv-mqtt-exporter"
    "$work/venv-mqtt-exporter/bin/pip" install -q mqtt-exporter==1.12.1 py-spy
fi
if [ ! -f "$work/node-red/node_modules/node-red/red.js" ]; then
    cd "$work/node-red"
    [ -f package.json ] || npm init -y >/dev/null
    npm install --no-audit --no-fund node-red@4 node-red-contrib-influxdb@0.7.0
fi
echo "peers installed in $work"
