"""PromQL over the catalogue's metrics that more than one consumer builds.

The energy-based PUE (principle 2: ΣE_facility / ΣE_IT over the window, never a mean of
ratios) is written here once; the recording rules (:mod:`greendc.exporters.rules`) and the
dashboards (:mod:`greendc.dashboards`) both take it from here, so a panel and a rule over
the same window show the same number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from greendc.catalogue import metric
from greendc.config import KPISettings

ENERGY = metric("greendc_site_energy_joules_total").name


def energy_increase(
    role: str, window: str, *, by: str = "site", matchers: Sequence[str] = ()
) -> str:
    """``sum [by (<by>)] (increase(<energy counter>{role="<role>",<matchers>}[<window>]))``.

    ``matchers`` are extra label matchers as PromQL text (``'site=~"$site"'``); ``by=""``
    sums over every series.
    """
    selector = ",".join([f'role="{role}"', *matchers])
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (increase({ENERGY}{{{selector}}}[{window}]))"


def fresh_window(max_gap_seconds: float) -> str:
    """How recently a PUE input counter must have advanced: ``kpi.max_gap_seconds``."""
    return f"{math.ceil(max_gap_seconds)}s"


#: The freshness the dashboards use: the default ``kpi.max_gap_seconds`` (the dashboards are
#: built without a config; the rules use the config's own).
DEFAULT_FRESH = fresh_window(KPISettings().max_gap_seconds)


def advanced(role: str, window: str, fresh: str, *, matchers: Sequence[str] = ()) -> str:
    """The role's energy over ``window``, only where it grew over it and within ``fresh``.

    A meter that died keeps its counter flat: it shows no energy here, neither a PUE near 0
    (a dead facility meter) nor +Inf (a dead IT meter).
    """
    inc = energy_increase(role, window, matchers=matchers)
    recent = energy_increase(role, fresh, matchers=matchers)
    return f"(\n  ({inc} > 0)\n  and on (site)\n  ({recent} > 0)\n)"


def pue_query(
    window: str,
    *,
    per_site: bool = True,
    matchers: Sequence[str] = (),
    fresh: str | None = None,
) -> str:
    """PromQL of the energy-based PUE over ``window``: per site, or over all the sites.

    A site whose IT energy did not grow is left out (no +Inf PUE from a dead meter). With
    ``fresh`` (the recording rules pass ``kpi.max_gap_seconds``), both counters must also
    have advanced within it (:func:`advanced`), so a dead facility meter gives no PUE rather
    than one near 0. The figure over all sites is ΣE_facility / ΣE_IT over the sites
    reporting both energies, on both sides of the ratio: a site with a facility meter and no
    IT energy must not inflate it.
    """
    if fresh is None:
        fac = energy_increase("facility", window, matchers=matchers)
        it = f"({energy_increase('it', window, matchers=matchers)} > 0)"
        if per_site:
            return f"{fac}\n/\n{it}\n"
    else:
        fac = advanced("facility", window, fresh, matchers=matchers)
        it = advanced("it", window, fresh, matchers=matchers)
        if per_site:
            return f"{fac}\n/ on (site)\n{it}\n"
    return (
        f"sum(\n  {fac}\n  and on (site)\n  {it}\n)\n/\n"
        f"sum(\n  {it}\n  and on (site)\n  {fac}\n)\n"
    )


__all__ = ["DEFAULT_FRESH", "ENERGY", "advanced", "energy_increase", "fresh_window", "pue_query"]
