"""The results as Markdown, and issue 9's targets checked against them."""

from __future__ import annotations

from typing import Any

from bench.throughput.measure import Result


def _f(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}" if x else "-"


def _busy(r: Result) -> str:
    share = r.extra.get("host_busy_share")
    return "-" if share is None else f"{share:.0%}"


def render(data: dict[str, Any]) -> str:
    """The markdown report."""
    m = data["machine"]
    lines = [
        "# greendc throughput benchmark",
        "",
        f"Run {data['date']} on {m['nproc']} x {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['mosquitto']}, influxd {m['influxd']}, node {m['node']}.",
        f"Command: `{data['command']}`. Load average at start: "
        f"{' '.join(data.get('loadavg_at_start', []))}.",
        "",
        "Ratios within one run are the result; absolute figures vary about ±25 % run to run. "
        "'host busy' is the share of all cores busy during the burst (consumer, broker, "
        "influxd, and anything else on the machine): above about 60 % on 2 cores the "
        "consumer was competing for CPU and its wall-clock rate understates it, while CPU "
        "per message stays comparable.",
        "",
    ]
    runs = [Result(**r) for r in data["runs"]]
    for kind in ("single", "batch50"):
        for qos in (0, 1):
            group = [r for r in runs if r.stream == kind and r.qos == qos]
            if not group:
                continue
            g0 = group[0]
            lines += [
                f"## {'single-reading messages' if kind == 'single' else 'gateway batches of 50'}"
                f", QoS {qos}: {g0.messages:,} messages, {g0.readings:,} readings, "
                f"{g0.meters:,} meters",
                "",
                "| contender | msg/s | readings/s | CPU µs/msg | CPU µs/reading "
                "| CPU s/100k readings | peak RSS MiB | verified | lost | rate vs paho "
                "| CPU/msg vs paho | host busy | status |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            ]
            paho = next((r for r in group if r.contender.startswith("bare paho")), None)
            for r in group:
                rate = (
                    f"{r.readings_per_s / paho.readings_per_s:.2f}x"
                    if paho and paho.readings_per_s and r.readings_per_s
                    else "-"
                )
                cpu = (
                    f"{r.cpu_us_per_message / paho.cpu_us_per_message:.2f}x"
                    if paho and paho.cpu_us_per_message and r.cpu_us_per_message
                    else "-"
                )
                status = r.status + (f" ({r.note})" if r.note else "")
                lines.append(
                    f"| {r.contender} | {_f(r.messages_per_s)} | {_f(r.readings_per_s)} "
                    f"| {_f(r.cpu_us_per_message, 1)} | {_f(r.cpu_us_per_reading, 2)} "
                    f"| {_f(r.cpu_s_per_100k_readings, 2)} | {_f(r.peak_rss_mib, 1)} "
                    f"| {r.verified:,} | {'-' if r.lost is None else f'{r.lost:,}'} "
                    f"| {rate} | {cpu} | {_busy(r)} | {status} |"
                )
            lines.append("")
    if data.get("growth"):
        lines += [
            "## Cost growth: greendc, gateway batches of 50, QoS 0",
            "",
            "| distinct meters | readings | readings/s | CPU µs/reading | peak RSS MiB | lost "
            "| host busy | status |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in (Result(**g) for g in data["growth"]):
            lines.append(
                f"| {r.meters:,} | {r.readings:,} | {_f(r.readings_per_s)} "
                f"| {_f(r.cpu_us_per_reading, 2)} | {_f(r.peak_rss_mib, 1)} "
                f"| {'-' if r.lost is None else f'{r.lost:,}'} | {_busy(r)} | {r.status} |"
            )
        lines.append("")
    sc = data.get("scrape")
    if sc:
        lines += [
            f"## /metrics scrape with {sc.get('meters', 0):,} meters",
            "",
            f"{sc.get('series', 0):,} samples in the exposition "
            f"({sc.get('meter_power_series', 0):,} per-meter power series).",
            "",
            "| encoding | best s | median s | bytes |",
            "|---|---:|---:|---:|",
        ]
        for enc in ("plain", "gzip"):
            if enc in sc:
                e = sc[enc]
                lines.append(
                    f"| {enc} | {e['best_s']:.3f} | {e['median_s']:.3f} | {e['bytes']:,} |"
                )
        lines.append("")
    if data.get("targets"):
        lines += [
            "## Targets (issue 9, point 2)",
            "",
            "| target | measured | met |",
            "|---|---|---|",
        ]
        for t in data["targets"]:
            lines.append(
                f"| {t['target']} | {t['measured']} | "
                f"{'yes' if t['met'] else ('no' if t['met'] is False else 'n/a')} |"
            )
        lines.append("")
    prof = data.get("handle_profile")
    if prof:
        lines += [
            "## Agent.handle() alone (no MQTT, no sink I/O)",
            "",
            "| stream | CPU µs/message | CPU µs/reading |",
            "|---|---:|---:|",
        ]
        for p in prof:
            lines.append(
                f"| {p['kind']} | {p['cpu_us_per_message']:.1f} | {p['cpu_us_per_reading']:.2f} |"
            )
        lines.append("")
    spy = data.get("py_spy")
    if spy:
        lines += [
            "## py-spy: greendc under single-message QoS 0 load (self time, all threads)",
            "",
            "| share | function |",
            "|---:|---|",
        ]
        for name, share in spy["self"][:20]:
            lines.append(f"| {share:.1%} | `{name}` |")
        lines += ["", "| share (inclusive) | function |", "|---:|---|"]
        for name, share in spy["inclusive"][:20]:
            lines.append(f"| {share:.1%} | `{name}` |")
        lines.append("")
    return "\n".join(lines)


def targets(
    runs: list[Result], growth: list[Result], scrape: dict[str, Any]
) -> list[dict[str, Any]]:
    """Issue 9's targets against this run."""
    out: list[dict[str, Any]] = []

    def get(name: str, kind: str, qos: int) -> Result | None:
        return next(
            (
                r
                for r in runs
                if r.contender.startswith(name)
                and r.stream == kind
                and r.qos == qos
                and r.readings_per_s
            ),
            None,
        )

    def exact(name: str, kind: str, qos: int) -> Result | None:
        return next(
            (
                r
                for r in runs
                if r.contender == name and r.stream == kind and r.qos == qos and r.readings_per_s
            ),
            None,
        )

    variants = [("greendc", "MQTT 5"), ("greendc (MQTT 3.1.1)", "MQTT 3.1.1")]
    for qos in (0, 1):
        for gname, proto in variants:
            tag = f", {proto}"
            g, p = exact(gname, "single", qos), get("bare paho", "single", qos)
            e, n = get("mqtt-exporter", "single", qos), get("node-red", "single", qos)
            if g and p:
                ratio = g.readings_per_s / p.readings_per_s
                out.append(
                    {
                        "target": f"single, QoS {qos}{tag}: rate >= 0.8x bare paho",
                        "measured": f"{ratio:.2f}x",
                        "met": ratio >= 0.8,
                    }
                )
            if g:
                out.append(
                    {
                        "target": f"single, QoS {qos}{tag}: CPU <= 60 µs/message",
                        "measured": f"{g.cpu_us_per_message:.1f} µs",
                        "met": g.cpu_us_per_message <= 60,
                    }
                )
            if g and e:
                ratio = g.readings_per_s / e.readings_per_s
                out.append(
                    {
                        "target": f"single, QoS {qos}{tag}: rate >= 2x mqtt-exporter",
                        "measured": f"{ratio:.2f}x",
                        "met": ratio >= 2,
                    }
                )
            if g and n:
                ok = (
                    g.readings_per_s >= n.readings_per_s
                    and g.cpu_seconds < n.cpu_seconds
                    and g.peak_rss_mib <= n.peak_rss_mib / 5
                )
                out.append(
                    {
                        "target": f"single, QoS {qos}{tag}: >= Node-RED rate, "
                        "less CPU, <= 1/5 its memory",
                        "measured": f"rate {g.readings_per_s / n.readings_per_s:.2f}x, CPU "
                        f"{g.cpu_seconds / n.cpu_seconds:.2f}x, RSS "
                        f"{g.peak_rss_mib:.0f} vs {n.peak_rss_mib:.0f} MiB",
                        "met": ok,
                    }
                )
            b = exact(gname, "batch50", qos)
            if b:
                out.append(
                    {
                        "target": f"batch50, QoS {qos}{tag}: >= 100,000 readings/s",
                        "measured": f"{b.readings_per_s:,.0f}/s",
                        "met": b.readings_per_s >= 1e5,
                    }
                )
                out.append(
                    {
                        "target": f"batch50, QoS {qos}{tag}: CPU <= 8 µs/reading",
                        "measured": f"{b.cpu_us_per_reading:.2f} µs",
                        "met": b.cpu_us_per_reading <= 8,
                    }
                )
    mine = [r for r in runs + growth if r.contender == "greendc" and r.lost is not None]
    if mine:
        lost = sum(r.lost or 0 for r in mine)
        out.append(
            {
                "target": "zero readings lost in every burst (greendc)",
                "measured": f"{lost:,} lost over {len(mine)} runs",
                "met": lost == 0,
            }
        )
    if scrape.get("plain"):
        best = scrape["plain"]["best_s"]
        out.append(
            {
                "target": f"/metrics scrape of {scrape.get('meters', 0):,} meters < 1 s",
                "measured": f"{best:.3f} s plain, {scrape['gzip']['best_s']:.3f} s gzip",
                "met": best < 1.0,
            }
        )
    return out
