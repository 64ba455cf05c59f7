#!/bin/bash
# Run once by the influxdb:2.x image after its DOCKER_INFLUXDB_INIT_MODE=setup (mounted in
# /docker-entrypoint-initdb.d). Maps the InfluxQL database "greendc" (retention policy
# "autogen") to the bucket, so InfluxQL works against InfluxDB 2.x: Grafana's InfluxDB data
# source (config/grafana/provisioning/datasources/greendc.yaml) and `greendc report` both
# query InfluxQL. The influx CLI is already configured by the setup step (host and operator
# token), so no credential is handled here.
set -euo pipefail

db=${GREENDC_INFLUXQL_DB:-greendc}
org=${DOCKER_INFLUXDB_INIT_ORG:?DOCKER_INFLUXDB_INIT_ORG is not set}
bucket=${DOCKER_INFLUXDB_INIT_BUCKET:?DOCKER_INFLUXDB_INIT_BUCKET is not set}

# The image exports the new bucket's id to init scripts; look it up when it does not.
bucket_id=${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}
if [ -z "$bucket_id" ]; then
    bucket_id=$(influx bucket list --org "$org" --name "$bucket" --hide-headers | cut -f1)
fi
if [ -z "$bucket_id" ]; then
    echo "greendc init: bucket $bucket not found in org $org" >&2
    exit 1
fi

if influx v1 dbrp list --org "$org" --db "$db" --hide-headers 2>/dev/null | grep -q .; then
    echo "greendc init: DBRP mapping for database $db exists"
else
    influx v1 dbrp create --org "$org" --db "$db" --rp autogen --bucket-id "$bucket_id" --default
    echo "greendc init: database $db (rp autogen) now maps to bucket $bucket ($bucket_id)"
fi
