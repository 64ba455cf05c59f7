"""The side-by-side throughput bench (bench/run.py), by concern.

    common.py      paths, names, BenchError
    stream.py      the burst every contender consumes; the meters a config needs for it
    watch.py       the broker's $SYS subscription count: when a contender has subscribed
    influx.py      progress and verification in influxd; sums from /metrics
    contenders.py  limit, bare paho, greendc, mqtt-exporter, Node-RED
    measure.py     one run: fresh broker, contender, burst, verified end, CPU and memory
    profile.py     the /metrics scrape timed, Agent.handle() under cProfile, py-spy
    render.py      the Markdown tables and issue 9's targets

Shared with the other benches and the tests: tests/support (brokers, burst publisher,
/proc sampling, machine description, servers).
"""
