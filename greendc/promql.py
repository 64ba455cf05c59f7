"""PromQL over the catalogue's metrics that more than one consumer builds.

The energy-based PUE (principle 2: ΣE_facility / ΣE_IT over the window, never a mean of
ratios) is written here once; the recording rules (:mod:`greendc.exporters.rules`) and the
dashboards (:mod:`greendc.dashboards`) both take it from here, so a panel and a rule over
the same window show the same number.
"""

from __future__ import annotations

from collections.abc import Sequence

from greendc.catalogue import metric

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


def pue_query(window: str, *, per_site: bool = True, matchers: Sequence[str] = ()) -> str:
    """PromQL of the energy-based PUE over ``window``: per site, or over all the sites.

    A site whose IT energy did not grow is left out (no +Inf PUE from a dead meter). The
    figure over all sites is ΣE_facility / ΣE_IT over the sites reporting both energies, on
    both sides of the ratio: a site with a facility meter and no IT energy must not inflate
    it.
    """
    fac = energy_increase("facility", window, matchers=matchers)
    it = energy_increase("it", window, matchers=matchers)
    if per_site:
        return f"{fac}\n/\n({it} > 0)\n"
    return (
        f"sum(\n  {fac}\n  and on (site)\n  ({it} > 0)\n)\n/\n"
        f"sum(\n  ({it} > 0)\n  and on (site)\n  {fac}\n)\n"
    )


__all__ = ["ENERGY", "energy_increase", "pue_query"]
