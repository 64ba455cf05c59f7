"""Generated Prometheus rules: promtool accepts them and its unit tests cover every alert.

Each alert gets a scenario: input series per minute and, for every alert it may raise, a
Python model of when its condition holds. The model, with Prometheus' pending/``for:``
semantics, gives the expected alerts at every minute, and ``promtool test rules`` must agree
at every minute. Each scenario also states its claims (quiet at the boundary and just on
the quiet side of it, still pending one minute before ``for:`` ends, firing after it,
resolved at the end); those are checked against the model first, so a scenario that
stopped exercising what it says fails too.

promtool compares annotations verbatim and ours hold ``$value`` templates, so the rules
given to ``promtool test rules`` are the generated ones with annotations removed; the
real files, annotations included, go through ``promtool check rules``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from greendc.catalogue import all_series_names
from greendc.config import Settings, load_config
from greendc.exporters import build_rules, window_label, write_rules
from greendc.exporters.rules import (
    ALERTS_FILE,
    PUE_MARGIN,
    PUE_WINDOWS,
    RECORDING_FILE,
    fleet_pue_record,
    pue_record,
)
from tests.helpers import PUE_TARGETS, site_config
from tests.support.builders import settings_from

ROOT = Path(__file__).resolve().parents[2]
JOB = "greendc"
INSTANCE = "agent-1:9108"
Value = float | str | None  # a sample, "stale" (a staleness marker) or None (no sample)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: install the Debian package 'prometheus' "
            "(it provides /usr/bin/promtool), which these tests need"
        )
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, timeout=600, check=False, cwd=cwd
    )


def _settings() -> Settings:
    sites: list[dict[str, Any]] = [
        site_config(
            "sg1",
            installed_it_kw=1000,
            targets=PUE_TARGETS,
            meters=[
                {"name": "incomer-a", "role": "facility"},
                {"name": "ups-1", "role": "it", "point": "ups_output"},
                # A '.' in the name exercises the regex escaping of the stale rule.
                {"name": "crah.1", "role": "cooling", "expiry_seconds": 120},
            ],
        ),
        site_config(
            "jhr1",
            grid_zone="MY-PEN",
            installed_it_kw=2000,
            pue_category=2,
            targets={"pue": 1.5, "pue_warning": 1.65, "pue_critical": 1.8},
            meters=[
                {"name": "incomer", "role": "facility"},
                {"name": "pdu-a", "role": "it", "point": "pdu_output"},
            ],
        ),
    ]
    return settings_from({"sites": sites})


def _alert_rules(settings: Settings) -> list[dict[str, Any]]:
    doc = yaml.safe_load(build_rules(settings)[ALERTS_FILE])
    return [r for g in doc["groups"] for r in g["rules"]]


def _for_minutes(settings: Settings, alertname: str, severity: str | None = None) -> int:
    """The generated rule's for: in minutes (from the rules, not restated here)."""
    durations = {
        r.get("for", "0m")
        for r in _alert_rules(settings)
        if r["alert"] == alertname and severity in (None, r["labels"]["severity"])
    }
    assert len(durations) == 1, f"{alertname}: several for: durations {durations}"
    match = re.fullmatch(r"(\d+)([mh])", durations.pop())
    assert match is not None
    return int(match.group(1)) * (60 if match.group(2) == "h" else 1)


def _severity(settings: Settings, alertname: str) -> str:
    (sev,) = {r["labels"]["severity"] for r in _alert_rules(settings) if r["alert"] == alertname}
    return str(sev)


# -- the model ------------------------------------------------------------------------------

Active = Callable[[int, bool], bool]  # (minute, firing at the previous minute) -> holds


@dataclass
class Candidate:
    """One alert a scenario may raise: its full labels, its for: and its condition."""

    labels: dict[str, str]
    for_minutes: int
    active: Active

    def firing(self, minutes: int) -> list[bool]:
        """Firing state at each minute (pending until the condition held for for:)."""
        out, since, was = [], None, False
        for t in range(minutes):
            if self.active(t, was):
                since = t if since is None else since
                was = t - since >= self.for_minutes
            else:
                since, was = None, False
            out.append(was)
        return out

    def first_active(self, after: int) -> int:
        """The first minute at or after ``after`` where the condition starts to hold."""
        for t in range(after, 100_000):
            if self.active(t, False):
                return t
        raise AssertionError(f"{self.labels}: the condition never holds after {after}")


@dataclass
class Scenario:
    """Series over ``minutes`` minutes and the alerts of one alert name."""

    alertname: str
    minutes: int
    series: dict[str, list[Value]]
    candidates: list[Candidate]
    claims: list[tuple[int, int, bool, str]] = field(default_factory=list)  # minute, cand, ...

    def expected(self) -> list[list[dict[str, str]]]:
        """The alerts firing at each minute, per the model."""
        states = [c.firing(self.minutes) for c in self.candidates]
        return [
            [c.labels for c, s in zip(self.candidates, states, strict=True) if s[t]]
            for t in range(self.minutes)
        ]

    def standard_claims(self, cand: int, quiet: list[tuple[int, str]], after: int) -> None:
        """Quiet minutes, pending just before for: ends, firing after it, resolved at the end."""
        c = self.candidates[cand]
        start = c.first_active(after)
        self.claims += [(m, cand, False, why) for m, why in quiet]
        if c.for_minutes > 0:
            self.claims.append((start + c.for_minutes - 1, cand, False, "pending before for:"))
        self.claims += [
            (start + c.for_minutes, cand, True, "fires once for: has passed"),
            (self.minutes - 1, cand, False, "resolved"),
        ]


def _render(values: list[Value]) -> str:
    return " ".join(
        "_" if v is None else v if isinstance(v, str) else repr(float(v)) for v in values
    )


def _phases(phases: list[tuple[int, float]], minutes: int) -> list[float]:
    """The level of the last phase (first minute, level) started at each minute."""
    return [max((p for p in phases if p[0] <= t), key=lambda p: p[0])[1] for t in range(minutes)]


def _counter(increments: list[float]) -> list[float]:
    """A counter from its increment per minute (the first increment is ignored)."""
    values, v = [], 0.0
    for t, inc in enumerate(increments):
        v += inc if t > 0 else 0.0
        values.append(v)
    return values


def _increase(values: list[float], t: int, window: int) -> float | None:
    """increase() over [t - window, t] minutes of a counter sampled each minute.

    With a sample at both ends of the window Prometheus does not extrapolate; the
    scenarios only ask at such minutes or where the answer is 0 either way."""
    if t < 1:
        return None
    return values[t] - values[max(0, t - window)]


def _fresh_minutes(settings: Settings) -> int:
    """The recording rules' freshness window in minutes (kpi.max_gap_seconds)."""
    seconds = settings.kpi.max_gap_seconds
    assert seconds % 60 == 0, "the scenarios sample each minute"
    return int(seconds // 60)


def _recorded_pue(fac: list[float], it: list[float], fresh: int) -> Callable[[int], float | None]:
    """The recording rule: 15-minute ratio, only while both counters advanced over the
    window and within the freshness window."""

    def ratio(m: int) -> float | None:
        d_fac, d_it = _increase(fac, m, 15), _increase(it, m, 15)
        f_fac, f_it = _increase(fac, m, fresh), _increase(it, m, fresh)
        if d_fac is None or d_it is None or f_fac is None or f_it is None:
            return None
        if d_fac <= 0 or d_it <= 0 or f_fac <= 0 or f_it <= 0:
            return None
        return d_fac / d_it

    return ratio


def _pue_high(ratio: Callable[[int], float | None], thr: float, clr: float, fresh: int) -> Active:
    """GreendcPUEHigh: above the threshold; once firing, while the highest PUE of the last
    fresh + 1 minutes is above the clear level, or while PUE is missing and the highest of
    the last hour was."""

    def highest(m: int, minutes: int) -> float | None:
        seen = [r for t in range(max(0, m - minutes), m + 1) if (r := ratio(t)) is not None]
        return max(seen) if seen else None

    def active(m: int, was: bool) -> bool:
        r = ratio(m)
        if r is not None and r > thr:
            return True
        if not was:
            return False
        h = highest(m, fresh + 1) if r is not None else highest(m, 60)
        return h is not None and h > clr

    return active


def _sel(name: str, **labels: str) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _pue(settings: Settings) -> list[Scenario]:
    out = []
    it_per_min, minutes = 1000.0, 260
    for site in sorted(settings.sites, key=lambda s: s.name):
        t = site.targets
        for severity, threshold in (("warning", t.pue_warning), ("critical", t.pue_critical)):
            clear = round(threshold - PUE_MARGIN, 9)
            # Whole joules per minute, so each 15-minute ratio is exactly the level.
            fac = _counter(
                _phases(
                    [
                        (0, round(threshold * it_per_min)),  # at the threshold
                        (40, round((threshold - 0.01) * it_per_min)),  # just below
                        (80, round((threshold + 0.04) * it_per_min)),  # above
                        (140, round((threshold - PUE_MARGIN / 2) * it_per_min)),  # hysteresis
                        (200, round(clear * it_per_min)),  # at the clear level
                    ],
                    minutes,
                )
            )
            it = _counter([it_per_min] * minutes)
            fresh = _fresh_minutes(settings)
            ratio = _recorded_pue(fac, it, fresh)
            cands = []
            for sev in ("warning", "critical"):
                thr = t.pue_warning if sev == "warning" else t.pue_critical
                clr = round(thr - PUE_MARGIN, 9)
                cands.append(
                    Candidate(
                        {"severity": sev, "site": site.name},
                        _for_minutes(settings, "GreendcPUEHigh", sev),
                        _pue_high(ratio, thr, clr, fresh),
                    )
                )
            sc = Scenario(
                "GreendcPUEHigh",
                minutes,
                {
                    _sel("greendc_site_energy_joules_total", site=site.name, role="facility"): [
                        *fac
                    ],
                    _sel("greendc_site_energy_joules_total", site=site.name, role="it"): [*it],
                },
                cands,
            )
            me = 0 if severity == "warning" else 1
            sc.standard_claims(me, [(35, "at the threshold"), (75, "just below it")], 80)
            sc.claims.append((195, me, True, "keeps firing above the clear level (hysteresis)"))
            out.append(sc)
    return out


def _pue_dead_meter(settings: Settings) -> list[Scenario]:
    """sg1's facility meter dies at minute 60 (the agent keeps exporting its flat counter)
    and comes back at minute 100 with the energy of the outage (bridged: one counter step).

    The site runs at PUE 1.9, above both thresholds, until minute 150, then at 1.5. A
    plain ratio would fall towards 0 while the meter is dead and clear GreendcPUEHigh; the
    recording rule records nothing instead, GreendcPUEMissing fires, and GreendcPUEHigh
    keeps firing until PUE is really below its clear level.
    """
    site = settings.site("sg1")
    assert site is not None
    minutes, it_per_min = 200, 1000.0
    fac_inc = []
    for m in range(minutes):
        if m <= 60 or 101 <= m <= 150:
            fac_inc.append(1900.0)
        elif m < 100:
            fac_inc.append(0.0)  # dead: no readings, the counter stands still
        elif m == 100:
            fac_inc.append(1900.0 * 40)  # back: the counter difference across the gap
        else:
            fac_inc.append(1500.0)
    fac, it = _counter(fac_inc), _counter([it_per_min] * minutes)
    fresh = _fresh_minutes(settings)
    ratio = _recorded_pue(fac, it, fresh)
    series: dict[str, list[Value]] = {
        _sel("greendc_site_energy_joules_total", site="sg1", role="facility"): [*fac],
        _sel("greendc_site_energy_joules_total", site="sg1", role="it"): [*it],
    }
    t = site.targets
    cands = [
        Candidate(
            {"severity": sev, "site": "sg1"},
            _for_minutes(settings, "GreendcPUEHigh", sev),
            _pue_high(ratio, thr, round(thr - PUE_MARGIN, 9), fresh),
        )
        for sev, thr in (("warning", t.pue_warning), ("critical", t.pue_critical))
    ]
    high = Scenario("GreendcPUEHigh", minutes, dict(series), cands)
    # A plain 15-minute ratio at minute 64 is 11/15 x 1.9 = 1.39: it would have cleared.
    assert ratio(64) == pytest.approx(1.9 * 11 / 15)
    for cand in (0, 1):
        high.claims += [
            (59, cand, True, "firing before the meter dies"),
            (64, cand, True, "the fading ratio of a dying meter does not clear it"),
            (80, cand, True, "PUE cannot be computed: still firing"),
            (120, cand, True, "the meter is back, PUE is still high"),
            (minutes - 1, cand, False, "resolved once PUE is really low"),
        ]
    labels = {"job": JOB, "instance": INSTANCE, "site": "sg1"}
    missing_series = {**series, _sel("greendc_site_pue_target_ratio", **labels): [1.45] * minutes}
    missing = Scenario(
        "GreendcPUEMissing",
        minutes,
        missing_series,
        [
            Candidate(
                {**labels, "severity": _severity(settings, "GreendcPUEMissing")},
                _for_minutes(settings, "GreendcPUEMissing"),
                lambda m, was: ratio(m) is None,
            )
        ],
    )
    missing.standard_claims(
        0, [(10, "computed"), (64, "the dead meter is still within its freshness window")], 30
    )
    missing.claims.append((99, 0, True, "still dead"))
    return [high, missing]


def _below(levels: list[float], target: float) -> Active:
    return lambda m, was: levels[m] < target


def _older_than(seen: list[float], expiry: float) -> Active:
    # Eval time in promtool starts at 0, so time() at minute m is 60 * m.
    return lambda m, was: 60 * m - seen[m] > expiry


def _renewable(settings: Settings) -> list[Scenario]:
    window = window_label(max(settings.kpi.windows_seconds))
    out = []
    for site in sorted(settings.sites, key=lambda s: s.name):
        target = site.targets.renewable_share
        if target <= 0:
            continue
        minutes = 260
        levels = _phases(
            [
                (0, target),
                (60, round(target + 0.001, 9)),
                (120, round(target - 0.001, 9)),
                (200, target),
            ],
            minutes,
        )
        cand = Candidate(
            {"severity": "info", "site": site.name, "window": window},
            _for_minutes(settings, "GreendcRenewableShareLow"),
            _below(levels, target),
        )
        sc = Scenario(
            "GreendcRenewableShareLow",
            minutes,
            {_sel("greendc_site_renewable_share_ratio", site=site.name, window=window): [*levels]},
            [cand],
        )
        sc.standard_claims(0, [(59, "at the target"), (119, "just above it")], 120)
        out.append(sc)
    return out


def _meter_stale(settings: Settings) -> list[Scenario]:
    out = []
    for site in sorted(settings.sites, key=lambda s: s.name):
        by_expiry: dict[float, Any] = {}
        for m in site.meters:
            expiry = m.expiry_seconds or settings.metrics.default_expiry_seconds
            by_expiry.setdefault(expiry, m)
        for expiry, meter in sorted(by_expiry.items()):
            minutes = 60
            # Reports every minute, goes silent at minute 10 (the agent still exports its
            # last time), reports again from minute 40.
            seen = [float(60 * m) if (m < 10 or m >= 40) else 600.0 for m in range(minutes)]
            labels = {"site": site.name, "meter": meter.name, "role": meter.role.value}
            cand = Candidate(
                {**labels, "severity": "warning"},
                _for_minutes(settings, "GreendcMeterStale"),
                _older_than(seen, expiry),
            )
            sc = Scenario(
                "GreendcMeterStale",
                minutes,
                {_sel("greendc_meter_last_seen_timestamp_seconds", **labels): [*seen]},
                [cand],
            )
            boundary = 10 + int(expiry // 60)  # age == expiry exactly
            sc.standard_claims(0, [(boundary, "age equal to the expiry")], 10)
            out.append(sc)
    return out


def _meter_missing(settings: Settings) -> list[Scenario]:
    out = []
    for site in sorted(settings.sites, key=lambda s: s.name):
        minutes = 40
        victim = sorted(m.name for m in site.meters)[0]
        series: dict[str, list[Value]] = {}
        for s2 in settings.sites:
            for m in s2.meters:
                values: list[Value] = [1.0] * minutes
                if s2.name == site.name and m.name == victim:
                    values = [1.0] * 10 + ["stale"] + [None] * 14 + [1.0] * 15
                labels = {"site": s2.name, "meter": m.name, "role": m.role.value}
                series[_sel("greendc_meter_last_seen_timestamp_seconds", **labels)] = values
        cand = Candidate(
            {"site": site.name, "meter": victim, "severity": "warning"},
            _for_minutes(settings, "GreendcMeterMissing"),
            lambda m, was: 10 <= m < 25,
        )
        sc = Scenario("GreendcMeterMissing", minutes, series, [cand])
        sc.standard_claims(0, [(9, "present")], 0)
        out.append(sc)
    return out


def _agent(
    settings: Settings,
    name: str,
    metric: str,
    good: float,
    bad: float,
    extra: dict[str, list[Value]] | None = None,
) -> Scenario:
    minutes = 40
    levels = _phases([(0, good), (10, bad), (25, good)], minutes)
    labels = {"job": JOB, "instance": INSTANCE}
    cand = Candidate(
        {**labels, "severity": _severity(settings, name)},
        _for_minutes(settings, name),
        lambda m, was: levels[m] == bad,
    )
    sc = Scenario(name, minutes, {_sel(metric, **labels): [*levels], **(extra or {})}, [cand])
    sc.standard_claims(0, [(9, "healthy")], 0)
    return sc


def _counter_alert(
    settings: Settings, name: str, metric: str, labels: dict[str, str], window: int = 5
) -> Scenario:
    minutes = 60
    counts = _counter(_phases([(0, 0.0), (20, 1.0), (30, 0.0)], minutes))
    counts = [c + 7.0 for c in counts]  # a counter that already counted before the test
    full = {"job": JOB, "instance": INSTANCE, **labels}
    cand = Candidate(
        {**full, "severity": _severity(settings, name)},
        _for_minutes(settings, name),
        lambda m, was: (_increase(counts, m, window) or 0.0) > 0,
    )
    sc = Scenario(name, minutes, {_sel(metric, **full): [*counts]}, [cand])
    sc.standard_claims(0, [(19, "counter not increasing")], 20)
    return sc


def _withheld(settings: Settings) -> Scenario:
    shortest = window_label(min(settings.kpi.windows_seconds))
    longest = window_label(max(settings.kpi.windows_seconds))
    minutes = 70
    flags = _phases([(0, 0.0), (10, 1.0), (45, 0.0)], minutes)
    labels = {"site": "sg1", "window": shortest}
    cand = Candidate(
        {**labels, "severity": "warning"},
        _for_minutes(settings, "GreendcPUEWithheld"),
        lambda m, was: flags[m] == 1.0,
    )
    series: dict[str, list[Value]] = {
        _sel("greendc_site_pue_withheld", **labels): [*flags],
        # The longest window is withheld for a day after every restart: never an alert.
        _sel("greendc_site_pue_withheld", site="sg1", window=longest): [1.0] * minutes,
    }
    sc = Scenario("GreendcPUEWithheld", minutes, series, [cand])
    sc.standard_claims(0, [(9, "not withheld")], 0)
    return sc


def _spool_growing(settings: Settings) -> Scenario:
    minutes = 120
    spool = _phases([(0, 0.0), (10, 1000.0)], minutes)  # empty, then non-empty but flat
    for m in range(40, 80):
        spool[m] = 1000.0 + 100.0 * (m - 39)  # growing
    for m in range(80, minutes):
        spool[m] = max(0.0, spool[79] - 200.0 * (m - 79))  # draining
    labels = {"job": JOB, "instance": INSTANCE, "sink": "influxdb_v2"}

    def slope_positive(m: int, was: bool) -> bool:
        window = [(Fraction(t), Fraction(spool[t])) for t in range(max(0, m - 15), m + 1)]
        if len(window) < 2 or spool[m] <= 0:
            return False
        n = len(window)
        mx = sum(x for x, _ in window) / n
        my = sum(y for _, y in window) / n
        return sum((x - mx) * (y - my) for x, y in window) > 0

    cand = Candidate(
        {**labels, "severity": "warning"},
        _for_minutes(settings, "GreendcSpoolGrowing"),
        slope_positive,
    )
    sc = Scenario(
        "GreendcSpoolGrowing", minutes, {_sel("greendc_spool_bytes", **labels): [*spool]}, [cand]
    )
    sc.standard_claims(0, [(9, "empty"), (39, "holding but not growing")], 40)
    return sc


def _spool_full(settings: Settings) -> Scenario:
    minutes = 40
    levels = _phases([(0, 0.0), (10, 1.0), (25, 0.0)], minutes)
    labels = {"job": JOB, "instance": INSTANCE, "sink": "influxdb_v2"}
    cand = Candidate(
        {**labels, "severity": _severity(settings, "GreendcSpoolFull")},
        _for_minutes(settings, "GreendcSpoolFull"),
        lambda m, was: levels[m] == 1.0,
    )
    sc = Scenario(
        "GreendcSpoolFull", minutes, {_sel("greendc_spool_full", **labels): levels}, [cand]
    )
    sc.standard_claims(0, [(9, "the spool takes batches")], 0)
    return sc


def _rejections(settings: Settings) -> Scenario:
    minutes = 90
    accepted_per_min = 900.0
    # 100/min rejected of 1000/min is the 10 % boundary; 99/min just below; 200/min above.
    rejected = _counter(_phases([(0, 100.0), (20, 99.0), (40, 200.0), (60, 50.0)], minutes))
    accepted = _counter([accepted_per_min] * minutes)
    labels = {"job": JOB, "instance": INSTANCE}

    def share_high(m: int, was: bool) -> bool:
        r, a = _increase(rejected, m, 5), _increase(accepted, m, 5)
        if r is None or a is None:
            return False
        rr, ra = r / 300.0, a / 300.0  # rate() as Prometheus computes it
        return rr + ra > 0 and rr / (rr + ra) > 0.1

    cand = Candidate(
        {**labels, "severity": "warning"},
        _for_minutes(settings, "GreendcRejectionsSurging"),
        share_high,
    )
    series: dict[str, list[Value]] = {
        _sel("greendc_agent_rejections_total", reason="malformed_json", **labels): [*rejected],
        _sel("greendc_agent_rejections_total", reason="non_numeric", **labels): [0.0] * minutes,
        _sel("greendc_agent_readings_accepted_total", **labels): [*accepted],
    }
    sc = Scenario("GreendcRejectionsSurging", minutes, series, [cand])
    sc.standard_claims(0, [(19, "at 10 %"), (39, "just below 10 %")], 40)
    return sc


def _scenarios(settings: Settings) -> list[Scenario]:
    return [
        *_pue(settings),
        *_pue_dead_meter(settings),
        *_renewable(settings),
        *_meter_stale(settings),
        *_meter_missing(settings),
        _withheld(settings),
        _agent(
            settings,
            "GreendcAgentDown",
            "up",
            1.0,
            0.0,
            {_sel("up", job="other", instance="x:1"): [0.0] * 40},
        ),
        _agent(settings, "GreendcMQTTDisconnected", "greendc_agent_mqtt_connected", 1.0, 0.0),
        _counter_alert(
            settings,
            "GreendcSinkWriteFailures",
            "greendc_sink_write_failures_total",
            {"sink": "influxdb_v2"},
        ),
        _spool_growing(settings),
        _spool_full(settings),
        _counter_alert(
            settings,
            "GreendcSpoolDropping",
            "greendc_spool_dropped_readings_total",
            {"sink": "influxdb_v2"},
        ),
        _rejections(settings),
        _counter_alert(
            settings, "GreendcSeriesCapReached", "greendc_agent_series_refused_total", {}
        ),
    ]


def _unit_test_doc(
    scenarios: list[Scenario], rule_files: list[str], group_order: list[str]
) -> dict[str, Any]:
    tests = []
    for sc in scenarios:
        expected = sc.expected()
        tests.append(
            {
                "name": f"{sc.alertname} {sc.candidates[0].labels}",
                "interval": "1m",
                "input_series": [
                    {"series": s, "values": _render(v)} for s, v in sorted(sc.series.items())
                ],
                "alert_rule_test": [
                    {
                        "eval_time": f"{t}m",
                        "alertname": sc.alertname,
                        "exp_alerts": [{"exp_labels": labels} for labels in expected[t]],
                    }
                    for t in range(sc.minutes)
                ],
            }
        )
    return {
        "rule_files": rule_files,
        "evaluation_interval": "1m",
        "group_eval_order": group_order,
        "tests": tests,
    }


def _without_annotations(text: str) -> str:
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return yaml.safe_dump(doc, sort_keys=True)


# -- tests ----------------------------------------------------------------------------------


def test_promtool_check_rules_accepts_the_generated_files(tmp_path: Path) -> None:
    for settings in (_settings(), load_config(ROOT / "config" / "greendc.example.yaml")):
        paths = write_rules(settings, tmp_path / settings.sites[0].name)
        result = _run("check", "rules", *map(str, paths))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_scenario_claims_hold_in_the_model() -> None:
    for sc in _scenarios(_settings()):
        assert sc.claims, sc.alertname
        for minute, cand, fires, why in sc.claims:
            state = sc.candidates[cand].firing(sc.minutes)[minute]
            assert state is fires, (
                f"{sc.alertname} {sc.candidates[cand].labels} minute "
                f"{minute}: expected {'firing' if fires else 'quiet'} ({why})"
            )


def test_every_alert_has_a_promtool_scenario() -> None:
    settings = _settings()
    generated = {r["alert"] for r in _alert_rules(settings)}
    covered = {sc.alertname for sc in _scenarios(settings)}
    assert generated == covered
    # Every per-site PUE and renewable rule is exercised, not only one site's.
    pue_sites = {
        c.labels["site"]
        for sc in _scenarios(settings)
        if sc.alertname == "GreendcPUEHigh"
        for c in sc.candidates
    }
    assert pue_sites == {s.name for s in settings.sites}


def test_promtool_unit_tests_agree_with_the_model_at_every_minute(tmp_path: Path) -> None:
    settings = _settings()
    names = [RECORDING_FILE, ALERTS_FILE]
    groups = []
    for name in names:
        text = build_rules(settings)[name]
        (tmp_path / name).write_text(_without_annotations(text))
        groups += [g["name"] for g in yaml.safe_load(text)["groups"]]
    # Recording groups first, so the PUE alerts see this minute's recorded ratio as the model
    # assumes (promtool otherwise orders groups by name).
    doc = _unit_test_doc(_scenarios(settings), names, groups)
    test_file = tmp_path / "greendc-rules.test.yml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = _run("test", "rules", test_file.name, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-20000:]
    assert "SUCCESS" in result.stdout


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
_FUNCTION_OR_KEYWORD = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def expr_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (strings, matchers, ranges and calls removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = _FUNCTION_OR_KEYWORD.sub(" ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in _KEYWORDS:
            continue
        names.add(word)
    return names


def test_expr_metric_names_parser() -> None:
    got = expr_metric_names(
        'sum by (site) (increase(a_total{role="x"}[5m])) / on (site) group_left b_c:d > 1.5 '
        'or absent(up{job="j"}) and time() - e'
    )
    assert got == {"a_total", "b_c:d", "up", "e"}


def test_every_metric_named_in_a_rule_is_catalogued() -> None:
    settings = load_config(ROOT / "config" / "greendc.example.yaml")
    files = {n: yaml.safe_load(t) for n, t in build_rules(settings).items()}
    rules = [r for doc in files.values() for g in doc["groups"] for r in g["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    allowed = all_series_names() | recorded | {"ALERTS", "up"}
    used = set().union(*(expr_metric_names(r["expr"]) for r in rules))
    assert "greendc_site_energy_joules_total" in used
    assert used - allowed == set()
    # Recording rules are used by alerts (so they are not dead) and only record catalogued data.
    alert_exprs = " ".join(r["expr"] for r in rules if "alert" in r)
    assert "site:greendc_pue:ratio_15m" in alert_exprs


def test_output_is_deterministic_and_independent_of_site_order() -> None:
    settings = _settings()
    reordered = settings.model_copy(update={"sites": list(reversed(settings.sites))})
    assert build_rules(settings) == build_rules(settings)
    assert build_rules(settings) == build_rules(reordered)


def test_every_alert_has_severity_annotations_and_an_existing_runbook_anchor() -> None:
    runbook = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#{1,6} (.+)$", runbook, flags=re.MULTILINE)
    }
    for rule in _alert_rules(load_config(ROOT / "config" / "greendc.example.yaml")):
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], rule["alert"]
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path.endswith("docs/runbooks.md")
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in runbooks.md"


def test_pue_rules_use_each_sites_own_thresholds() -> None:
    settings = _settings()
    for site in settings.sites:
        exprs = {
            r["labels"]["severity"]: r["expr"]
            for r in _alert_rules(settings)
            if r["alert"] == "GreendcPUEHigh" and r["labels"]["site"] == site.name
        }
        assert f"> {site.targets.pue_warning!r}\n" in exprs["warning"]
        assert f"> {site.targets.pue_critical!r}\n" in exprs["critical"]


def test_recording_rules_are_energy_ratios() -> None:
    doc = yaml.safe_load(build_rules(_settings())[RECORDING_FILE])
    records = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"]}
    assert set(records) == {
        "site:greendc_pue:ratio_15m",
        "site:greendc_pue:ratio_1h",
        "fleet:greendc_pue:ratio_15m",
        "fleet:greendc_pue:ratio_1h",
    }
    for expr in records.values():
        assert "avg" not in expr  # never an average of ratios
        assert expr.count("increase(greendc_site_energy_joules_total") >= 2
    # A site's PUE needs both counters to have advanced over the window and lately.
    fresh = f"[{int(_settings().kpi.max_gap_seconds)}s]"
    for window in ("15m", "1h"):
        expr = records[f"site:greendc_pue:ratio_{window}"]
        assert expr.count(fresh) == 2 and expr.count(f"[{window}]") == 2
        assert expr.count("> 0") == 4


def test_example_prometheus_config_is_valid(tmp_path: Path) -> None:
    config = ROOT / "config" / "prometheus" / "prometheus.yml"
    doc = yaml.safe_load(config.read_text())
    target = tmp_path / "prometheus.yml"
    target.write_text(config.read_text())
    # Generate the rule files where the example config expects them, relative to it.
    rule_dir = tmp_path / Path(doc["rule_files"][0]).parent
    write_rules(load_config(ROOT / "config" / "greendc.example.yaml"), rule_dir)
    result = _run("check", "config", str(target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_example_alertmanager_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed (Debian package prometheus-alertmanager)")
    config = ROOT / "config" / "alertmanager" / "alertmanager.yml"
    result = subprocess.run(
        [amtool, "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load(config.read_text())
    inhibit = doc["inhibit_rules"][0]
    assert set(inhibit["equal"]) >= {"alertname", "site"}


def test_rules_and_dashboards_take_the_pue_query_from_one_place() -> None:
    from greendc.dashboards.common import pue_energy

    recorded = {}
    for body in build_rules(_settings()).values():
        for group in yaml.safe_load(body)["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    recorded[rule["record"]] = rule["expr"].strip()
    unfiltered = (',site=~"$site"', "")  # the dashboards' site variable
    for window in PUE_WINDOWS:
        panel_site = pue_energy(window=window, by="site").replace(*unfiltered)
        panel_all = pue_energy(window=window).replace(*unfiltered)
        assert recorded[pue_record(window)] == panel_site
        assert recorded[fleet_pue_record(window)] == panel_all
        assert "and on (site)" in panel_all  # only sites reporting both energies count
