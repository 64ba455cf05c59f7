"""The report's first answers, shared by the HTML and the PDF so both say the same thing.

Five headline cards (total energy, PUE against target, renewable share, emissions by both
Scope 2 methods) and one sentence on why the two emission methods differ (or do not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from greendc.exporters.report.compute import Report, Row
from greendc.exporters.report.fmt import fmt_change, fmt_value, row_text
from greendc.exporters.report.labels import period_name, site_name
from greendc.exporters.report.periods import Period


@dataclass(frozen=True)
class Card:
    """One headline figure: what it is, its value, one line of context."""

    label: str
    value: str
    detail: str
    warn: bool = False


def by_kpi(rows: Sequence[Row]) -> dict[str, Row]:
    """Rows by KPI key; the fleet PUE also answers for ``pue``."""
    out = {r.kpi: r for r in rows}
    if "fleet_pue" in out:
        out["pue"] = out["fleet_pue"]
    return out


def headline_rows(report: Report) -> dict[str, Row]:
    """The rows the first screen answers from: the fleet's, or the only site's."""
    if len(report.sites) == 1:
        return by_kpi(report.sites[0].rows)
    return by_kpi(report.fleet_rows)


def emissions_story(report: Report) -> str:
    """Why market-based and location-based emissions differ (or do not), in a sentence."""
    by = headline_rows(report)
    loc, mkt = by.get("scope2_location"), by.get("scope2_market")
    if loc is None or mkt is None or loc.value is None or mkt.value is None:
        return "Emissions are withheld for this period: see the notes for the reason."
    contracts = sum(
        (by[k].value or 0.0) for k in ("E_renewable_go_rec", "E_renewable_ppa") if k in by
    )
    no_residual = [
        site_name(s.site)
        for s in report.sites
        for r in s.rows
        if r.kpi == "scope2_market" and "no residual mix" in r.note
    ]
    parts = []
    if contracts > 0:
        parts.append(
            f"{fmt_value(contracts, 'kWh')} of renewable certificates and PPAs count as "
            "zero-emission in the market-based method"
        )
    else:
        parts.append("no renewable certificates or PPAs were retired")
    if no_residual:
        parts.append(
            "no residual mix is published for the grid of "
            + ", ".join(no_residual)
            + ", so the market-based method uses the grid average there"
        )
    why = "; ".join(parts)
    diff = mkt.value - loc.value
    if abs(diff) <= 1e-9 * max(abs(loc.value), 1.0):
        return (
            f"Market-based and location-based emissions are the same "
            f"({fmt_value(loc.value, loc.unit)}): {why}."
        )
    direction = "lower" if diff < 0 else "higher"
    pct = abs(diff) / loc.value * 100 if loc.value else 0.0
    if diff > 0:
        rest = (
            "the rest of the grid energy is charged at the residual mix, which is more carbon-"
            "intensive than the grid average because it leaves out renewable energy others claimed"
        )
    else:
        rest = "the rest of the grid energy is charged at the residual mix where one is published"
    return (
        f"Market-based emissions are {fmt_value(abs(diff), loc.unit)} ({pct:.1f} %) {direction}"
        f" than location-based: {why}; {rest}."
    )


def _pue_target_text(report: Report) -> tuple[str, bool]:
    """What the PUE card says about targets, and whether a target is missed."""
    verdicts: list[tuple[str, float, float]] = []
    for s in report.sites:
        t = s.site.targets.pue
        r = by_kpi(s.rows).get("pue")
        if t is None or r is None or r.value is None:
            continue
        verdicts.append((site_name(s.site), r.value, t))
    if not verdicts:
        return "no PUE target set", False
    missed = [(n, pue, t) for n, pue, t in verdicts if pue > t]
    if len(report.sites) == 1:
        _, pue, t = verdicts[0]
        word = "above" if pue > t else "within"
        return f"{word} the target of {t:.2f}", pue > t
    met = len(verdicts) - len(missed)
    text = f"{met} of {len(verdicts)} sites within their PUE target"
    if missed:
        text += "; above: " + ", ".join(f"{n} {p:.2f} (target {t:.2f})" for n, p, t in missed)
    return text, bool(missed)


def _ref_target_text(report: Report, ref: Row | None) -> str:
    targets = [(site_name(s.site), s.site.targets.renewable_share) for s in report.sites]
    set_ = [(n, t) for n, t in targets if t]  # 0 is the config's "no target"
    if not set_:
        return "no renewable target set"
    if len(report.sites) == 1:
        t = set_[0][1]
        word = "below" if ref is None or ref.value is None or ref.value < t else "meets"
        return f"{word} the target of {t * 100:g} %"
    return "targets: " + ", ".join(f"{n} {t * 100:g} %" for n, t in set_)


def _prev_text(r: Row, period: Period) -> str:
    prev = period_name(period.previous())
    text = fmt_change(r, last_year=False, period_name=prev)
    return f"{text} vs {prev}" if r.prev_month is not None and r.value is not None else text


def headline_cards(report: Report) -> list[Card]:
    """The first screen: total energy, PUE, renewable share, emissions by both methods."""
    by = headline_rows(report)
    p = report.period
    cards = []
    dc = by.get("E_DC")
    if dc is not None:
        cards.append(Card("Total energy", row_text(dc), _prev_text(dc, p)))
    pue = by.get("pue")
    if pue is not None:
        text, warn = _pue_target_text(report)
        cards.append(Card("Power usage effectiveness (PUE)", row_text(pue), text, warn))
    ref = by.get("ref")
    if ref is not None:
        cards.append(Card("Renewable share", row_text(ref), _ref_target_text(report, ref)))
    for key, name in (
        ("scope2_location", "Emissions, location-based"),
        ("scope2_market", "Emissions, market-based"),
    ):
        r = by.get(key)
        if r is not None:
            cards.append(Card(name, row_text(r), _prev_text(r, p)))
    return cards


__all__ = ["Card", "by_kpi", "emissions_story", "headline_cards", "headline_rows"]
