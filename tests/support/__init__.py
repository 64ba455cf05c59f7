"""Test and benchmark support, in one place: what tests/ and bench/ both build on.

    servers.py    real Mosquitto, InfluxDB 1.x, VictoriaMetrics and Prometheus on free ports
    brokers.py    the broker configurations the benchmarks run (a burst broker, $SYS on)
    builders.py   the one way tests build Settings (settings_from, sites, make_settings), snapshots
    mqtt.py       a QoS 1 paho publisher, MQTT packet encoders, a raw-socket burst publisher
    collector.py  a running collector with /metrics, scrapes, paced feeding (end-to-end tests)
    collect_process.py  `greendc collect` as its own process; rows of its embedded store
    profiles.py   the shipped device profiles' examples as test cases
    sparkplug.py  a Sparkplug B edge node built with the specification's protobuf schema
    procfs.py     /proc sampling: CPU seconds, peak and current RSS, host ticks; measured processes
    machine.py    what a benchmark ran on (cores, CPU, memory, Python, server versions)
    polling.py    wait_until: poll with a deadline, never sleep blindly
    programs.py   headless Chromium, LibreOffice Calc and poppler: the report opened as people do

Production code never imports this package (tests/unit/test_support.py), and it is not in
the wheel (tests/unit/test_packaging.py). The older module names tests.servers,
tests.helpers and tests.integration.e2e_support re-export from here.
"""
