#!/bin/sh
# Create every secret docker-compose.yml needs, with random values, in this directory (or in
# the directory given as $1). A file that exists is kept: run it again after adding a secret.
# Needs openssl, mosquitto_passwd (from the mosquitto package, or docker for the image's) and
# a bcrypt hasher: htpasswd (apache2-utils), python3 with bcrypt, or docker.
set -eu

dir=${1:-$(dirname "$0")}
mqtt_host=${GREENDC_MQTT_TLS_HOST:-localhost}
mkdir -p "$dir"
chmod 0700 "$dir"
cd "$dir"
umask 022   # readable by the containers' users; the 0700 directory keeps other host users out

random_secret() {   # file, bytes
    if [ ! -e "$1" ]; then
        openssl rand -hex "$2" > "$1"
        echo "created $dir/$1"
    fi
}

random_secret influx_admin_password 24
random_secret influx_admin_token 32
random_secret influx_collector_password 24
random_secret influx_reader_password 24
random_secret grafana_admin_password 24
random_secret mqtt_collector_password 24
random_secret mqtt_simulator_password 24
random_secret mqtt_healthcheck_password 24
random_secret metrics_password 24

bcrypt_hash() {   # reads a password on stdin, prints its bcrypt hash (cost 10)
    if command -v htpasswd >/dev/null 2>&1; then
        htpasswd -niBC 10 "" | tr -d ':\n'
    elif python3 -c 'import bcrypt' >/dev/null 2>&1; then
        python3 -c 'import bcrypt, sys; print(bcrypt.hashpw(sys.stdin.read().strip().encode(), bcrypt.gensalt(10)).decode(), end="")'
    else
        docker run --rm -i httpd:2.4-alpine htpasswd -niBC 10 "" | tr -d ':\n'
    fi
}

# The collectors' /metrics web config: Prometheus signs in as "prometheus" with
# metrics_password; the collectors keep only its bcrypt hash.
if [ ! -e metrics_web_config.yml ]; then
    hash=$(bcrypt_hash < metrics_password)
    printf 'basic_auth_users:\n  prometheus: %s\n' "$hash" > metrics_web_config.yml
    echo "created $dir/metrics_web_config.yml"
fi

passwd() {   # mosquitto_passwd arguments, run in this directory
    if command -v mosquitto_passwd >/dev/null 2>&1; then
        mosquitto_passwd "$@"
    else
        docker run --rm -v "$PWD:/work" -w /work eclipse-mosquitto:2 mosquitto_passwd "$@"
    fi
}

if [ ! -e mosquitto_passwd ]; then
    : > mosquitto_passwd
    for user in collector simulator healthcheck; do
        passwd -b mosquitto_passwd "$user" "$(cat "mqtt_${user}_password")"
    done
    chmod 0644 mosquitto_passwd
    echo "created $dir/mosquitto_passwd (users collector, simulator, healthcheck;"
    echo "  add one per site gateway: see config/mosquitto/README.md)"
fi

if [ ! -e mqtt_server.crt ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=greendc MQTT CA" \
        -keyout mqtt_ca.key -out mqtt_ca.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$mqtt_host" \
        -keyout mqtt_server.key -out mqtt_server.csr 2>/dev/null
    printf 'subjectAltName=DNS:%s,DNS:mosquitto,DNS:localhost,IP:127.0.0.1\n' "$mqtt_host" > mqtt_server.ext
    openssl x509 -req -in mqtt_server.csr -CA mqtt_ca.crt -CAkey mqtt_ca.key -CAcreateserial \
        -days 825 -extfile mqtt_server.ext -out mqtt_server.crt 2>/dev/null
    rm -f mqtt_server.csr mqtt_server.ext mqtt_ca.srl
    chmod 0644 mqtt_server.key
    chmod 0600 mqtt_ca.key
    echo "created $dir/mqtt_ca.crt, mqtt_server.crt, mqtt_server.key for $mqtt_host"
    echo "  (mqtt_ca.key signs gateway certificates: move it off the server)"
fi
