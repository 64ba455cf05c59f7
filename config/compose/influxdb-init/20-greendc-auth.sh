#!/bin/bash
# Run once by the influxdb:2.x image after its setup, after 10-greendc-dbrp.sh (mounted in
# /docker-entrypoint-initdb.d). Creates the two authorizations greendc uses, each scoped to
# the one bucket and to one kind of access, so the operator token never leaves this service:
#
#   greendc-collector  write-only: the collectors (they parse hostile input)
#   greendc-reader     read-only:  Grafana's InfluxQL data source and `greendc report`
#
# They are InfluxDB 1.x-compatible authorizations (user name and password) because greendc's
# collectors write through /write and Grafana and the report query InfluxQL through /query,
# both of which InfluxDB 2.x serves for the DBRP-mapped database "greendc". The passwords are
# docker secrets made by config/compose/secrets/generate.sh.
# tests/unit/test_compose.py reads the `influx v1 auth create` lines below: keep one per line.
set -euo pipefail

org=${DOCKER_INFLUXDB_INIT_ORG:?DOCKER_INFLUXDB_INIT_ORG is not set}
bucket=${DOCKER_INFLUXDB_INIT_BUCKET:?DOCKER_INFLUXDB_INIT_BUCKET is not set}
collector_password_file=${GREENDC_INFLUX_COLLECTOR_PASSWORD_FILE:?not set}
reader_password_file=${GREENDC_INFLUX_READER_PASSWORD_FILE:?not set}

bucket_id=${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}
if [ -z "$bucket_id" ]; then
    bucket_id=$(influx bucket list --org "$org" --name "$bucket" --hide-headers | cut -f1)
fi
if [ -z "$bucket_id" ]; then
    echo "greendc init: bucket $bucket not found in org $org" >&2
    exit 1
fi

exists() {   # user name
    influx v1 auth list --org "$org" --hide-headers 2>/dev/null | cut -f3 | grep -qx -- "$1"
}

# The password is on influx's command line only inside this container, during the first
# setup (the influx CLI has no password-file option).
if exists greendc-collector; then
    echo "greendc init: authorization greendc-collector exists"
else
    influx v1 auth create --org "$org" --username greendc-collector --write-bucket "$bucket_id" --password "$(cat "$collector_password_file")" --description "greendc collectors: write-only, bucket $bucket"
    echo "greendc init: greendc-collector may write bucket $bucket ($bucket_id), nothing else"
fi
if exists greendc-reader; then
    echo "greendc init: authorization greendc-reader exists"
else
    influx v1 auth create --org "$org" --username greendc-reader --read-bucket "$bucket_id" --password "$(cat "$reader_password_file")" --description "Grafana and greendc report: read-only, bucket $bucket"
    echo "greendc init: greendc-reader may read bucket $bucket ($bucket_id), nothing else"
fi
