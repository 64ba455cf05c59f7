"""The physics of a simulated data centre, one site at a time.

Everything here is a pure function of (site config, seed, simulated time): no clock, no
network. :class:`SiteSim` advances one site by a step and returns what every configured
meter would read; :func:`iter_steps` drives all sites of a :class:`~greendc.config.Settings`.

Assumptions (cited by the README; numbers are per unit of IT power unless said otherwise)
========================================================================================

Climate is read from ``site.climate``: text containing "tropic" selects the tropical
profile, "temperate", "oceanic", "continental", "cool" or "cold" the temperate one; when it
says neither, a site within 23.5° of the equator is tropical. Latitude/longitude come from
the site's IANA time zone (a small table of data-centre hubs; otherwise the UTC offset).

Outdoor air (dry bulb)
    tropical: 29.8 °C mean, ±2.6 °C diurnal swing peaking at 15:00 local, ±0.8 °C season,
    weather noise σ 0.7 °C (6 h memory): about 27-33 °C, humid all year.
    temperate (Frankfurt-like): 10.5 °C annual mean, ±9.5 °C season (coldest mid-January),
    ±4.5 °C diurnal, weather noise σ 3.5 °C with 3-day memory.

IT load
    utilisation of ``installed_it_kw`` ≈ 0.62-0.64 base (±0.03 per site) + 0.05 diurnal
    (peak 15:00 local) − 0.04 at weekends + noise σ 0.015 (2 h memory): 55-75 %.
    It is split over the site's ``it`` meters by fixed random weights (0.7-1.3) with slow
    per-meter drift. Where it is measured follows the meter's point: ``it_input`` (servers),
    ``pdu_output`` = it_input × 1.005 (branch cabling), ``ups_output`` = pdu_output ×
    (1 + PDU transformer loss: 1.5 % tropical, 1.0 % temperate).

UPS
    loss = rating × (a + b·x + c·x²), x = load / rating (the usual no-load + linear +
    copper-loss shape). tropical 2N (rating 2 × installed): a 1.2 %, b 1.0 %, c 2.0 %,
    ≈ 95 % efficient at a third load; temperate N+1 (rating 1.25 × installed) with
    modern modules: a 0.8 %, b 0.6 %, c 1.2 %, ≈ 97 % at half load.

Cooling (air-cooled white space: CRAH units on a chilled-water plant)
    heat to reject H = UPS input + lighting + half the other overhead.
    fans and pumps: 6.5 % of H (tropical 8 %) + 1 % of installed capacity (minimum fan speed).
    compressors: H × (1 − free-cooling fraction) / COP(T).
    COP tropical (air-cooled chillers): 8 − 0.15·T, within 2.3-7 (≈ 3.5 at 30 °C);
    temperate (water-cooled chillers): 10.5 − 0.2·T, within 3-9 (≈ 6.5 at 20 °C).
    free cooling (economiser): tropical none; temperate 100 % below 12 °C, none above 20 °C,
    linear between (half at 16 °C).

Other loads
    lighting: 0.8 % of installed (60 % at night, 100 % 07:00-19:00 local);
    other overhead (offices, security, BMS): 1.5 % of installed, +0.5 % in office hours;
    unmetered losses (MV transformers, switchgear): 1 % of the total.
    facility (E_DC) = UPS input + cooling + lighting + other + unmetered losses.

Resulting PUE (ΣE_facility / ΣE_IT over a week, tested): tropical 1.4-1.7 (≈ 1.50-1.53
at Category 1, ≈ 1.55 at Categories 2 and 3); temperate 1.15-1.35 (≈ 1.16 in winter on
free cooling, 1.23-1.35 in summer depending on the weather; a heatwave week can exceed
1.35). Water (WUE): ≈ 1.9 L/kWh tropical, 0.2 (winter) to 1.8 (summer) temperate.

On-site solar
    peak capacity per ``renewable_onsite`` meter: 5 % (tropical) or 3 % (temperate) of
    installed IT kW (roof and car-park arrays). Clear-sky irradiance from solar elevation
    (declination, hour angle at the site's longitude) ∝ sin(elevation)^1.2, × 0.8 system
    losses, × (1 − 0.75 × cloudiness); cloudiness mean 0.5 tropical, 0.55-0.65 temperate
    (cloudier in winter), 1 h memory. Zero whenever the sun is below the horizon.
    On-site energy is consumed by the site: it is inside the facility total and not in
    ``grid_import`` (= facility − solar − generator).

Generator test
    the first Tuesday of every month, 10:00-10:30 local: an on-load test where the
    generator carries half the facility load (so ``generator`` shows it and ``grid_import``
    drops; the facility total is unchanged).

Heat reuse and water
    heat reuse (kW thermal): temperate 30 % of H scaled by heating demand
    (clamp((18 − T)/15, 0.1, 1)); tropical 5 % of H (hot water for a neighbour).
    water: evaporative cooling towers use 1.8 L per kWh of heat rejected by the chillers
    (mechanical cooling), 0.2 L/kWh in free-cooling mode (dry coolers, blow-down).

Sub-meters (``sign: -1``)
    a sub-meter's own load is inside its parent's reading, so parent − sub = the role's
    real value. A facility sub-meter (e.g. a tenant office) draws 2.5 % of installed
    capacity with an office-hours profile; other roles' sub-meters 4 % of the role.

Counters
    ``energy_wh`` (and ``water_l``) are cumulative, starting from a random plausible value,
    and grow by the trapezoid of consecutive power (flow) samples × step, so
    ΔE = (P₁ + P₂)/2 · Δt exactly between samples.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from greendc.config import Settings, Site
from greendc.model import ITPoint, Role

# Fields as published: quantity name -> value (canonical units).
Fields = dict[str, float]

# The PUE ranges this model is built to produce over a day or a week (ΣE_facility / ΣE_IT);
# tests hold it to them. A temperate heatwave week may exceed the upper bound.
PUE_RANGE: dict[str, tuple[float, float]] = {"tropical": (1.4, 1.7), "temperate": (1.15, 1.35)}

# (latitude, longitude) of the data-centre hubs a time zone most likely means.
_TZ_LOCATION: dict[str, tuple[float, float]] = {
    "Asia/Singapore": (1.35, 103.82),
    "Asia/Kuala_Lumpur": (1.66, 103.60),  # Johor (Sedenak, Kulai): the Malaysian DC hub
    "Asia/Jakarta": (-6.20, 106.85),
    "Asia/Bangkok": (13.75, 100.50),
    "Asia/Ho_Chi_Minh": (10.82, 106.63),
    "Asia/Manila": (14.60, 120.98),
    "Asia/Hong_Kong": (22.32, 114.17),
    "Asia/Tokyo": (35.68, 139.69),
    "Asia/Kolkata": (19.08, 72.88),
    "Australia/Sydney": (-33.87, 151.21),
    "Europe/Berlin": (50.11, 8.68),  # Frankfurt
    "Europe/Amsterdam": (52.37, 4.90),
    "Europe/London": (51.51, -0.13),
    "Europe/Dublin": (53.35, -6.26),
    "Europe/Paris": (48.86, 2.35),
    "Europe/Stockholm": (59.33, 18.07),
    "America/New_York": (39.04, -77.49),  # Ashburn
    "America/Chicago": (41.88, -87.63),
    "America/Los_Angeles": (37.35, -121.96),
    "UTC": (50.0, 0.0),
}


@dataclass(frozen=True)
class ClimateProfile:
    """Parameters of one climate (see the module docstring for where they come from)."""

    name: str
    mean_temp_c: float
    seasonal_amp_c: float
    warmest_day_of_year: int
    diurnal_amp_c: float
    weather_sigma_c: float
    weather_tau_seconds: float
    free_full_below_c: float  # 100 % free cooling at or below this outdoor temperature
    free_none_above_c: float  # no free cooling at or above this
    cop_intercept: float
    cop_slope_per_c: float
    cop_min: float
    cop_max: float
    fan_pump_fraction: float
    ups_capacity_factor: float  # UPS rating / installed IT kW (2N = 2)
    ups_loss_abc: tuple[float, float, float]
    pdu_loss_fraction: float
    utilisation_base: float
    cloud_mean: float
    cloud_winter_extra: float
    solar_kwp_fraction: float
    heat_reuse_fraction: float
    heat_reuse_demand_driven: bool


TROPICAL = ClimateProfile(
    name="tropical",
    mean_temp_c=29.8,
    seasonal_amp_c=0.8,
    warmest_day_of_year=130,
    diurnal_amp_c=2.6,
    weather_sigma_c=0.7,
    weather_tau_seconds=6 * 3600.0,
    free_full_below_c=-100.0,
    free_none_above_c=-99.0,
    cop_intercept=8.0,
    cop_slope_per_c=0.15,
    cop_min=2.3,
    cop_max=7.0,
    fan_pump_fraction=0.08,
    ups_capacity_factor=2.0,
    ups_loss_abc=(0.012, 0.010, 0.020),
    pdu_loss_fraction=0.015,
    utilisation_base=0.64,
    cloud_mean=0.5,
    cloud_winter_extra=0.0,
    solar_kwp_fraction=0.05,
    heat_reuse_fraction=0.05,
    heat_reuse_demand_driven=False,
)

TEMPERATE = ClimateProfile(
    name="temperate",
    mean_temp_c=10.5,
    seasonal_amp_c=9.5,
    warmest_day_of_year=197,
    diurnal_amp_c=4.5,
    weather_sigma_c=3.5,
    weather_tau_seconds=3 * 86400.0,
    free_full_below_c=12.0,
    free_none_above_c=20.0,
    cop_intercept=10.5,
    cop_slope_per_c=0.2,
    cop_min=3.0,
    cop_max=9.0,
    fan_pump_fraction=0.065,
    ups_capacity_factor=1.25,
    ups_loss_abc=(0.008, 0.006, 0.012),
    pdu_loss_fraction=0.010,
    utilisation_base=0.62,
    cloud_mean=0.55,
    cloud_winter_extra=0.10,
    solar_kwp_fraction=0.03,
    heat_reuse_fraction=0.30,
    heat_reuse_demand_driven=True,
)


def site_location(site: Site) -> tuple[float, float]:
    """(latitude, longitude) in degrees assumed for a site, from its time zone."""
    if site.timezone in _TZ_LOCATION:
        return _TZ_LOCATION[site.timezone]
    offset = ZoneInfo(site.timezone).utcoffset(datetime(2025, 1, 15))
    hours = offset.total_seconds() / 3600.0 if offset is not None else 0.0
    lat = 1.5 if "tropic" in site.climate.lower() else 48.0
    return lat, hours * 15.0


def climate_profile(site: Site) -> ClimateProfile:
    """The climate profile a site is simulated with (see the module docstring)."""
    text = site.climate.lower()
    if "tropic" in text:
        return TROPICAL
    if any(w in text for w in ("temperate", "oceanic", "continental", "cool", "cold")):
        return TEMPERATE
    lat, _ = site_location(site)
    return TROPICAL if abs(lat) < 23.5 else TEMPERATE


def _seed_for(seed: int, *parts: str) -> int:
    # crc32 rather than hash(): str hashes are salted per process, and runs must repeat.
    return zlib.crc32("/".join((str(seed), *parts)).encode()) & 0xFFFFFFFF


class _OU:
    """An Ornstein-Uhlenbeck process: noise with a memory, independent of the step size."""

    def __init__(self, rng: random.Random, sigma: float, tau_seconds: float) -> None:
        self._rng = rng
        self.sigma = sigma
        self.tau_seconds = tau_seconds
        self.x = rng.gauss(0.0, sigma)

    def step(self, dt_seconds: float) -> float:
        """Advance by dt and return the new value."""
        if dt_seconds > 0:
            a = math.exp(-dt_seconds / self.tau_seconds)
            self.x = a * self.x + self.sigma * math.sqrt(1.0 - a * a) * self._rng.gauss(0, 1)
        return self.x


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def first_tuesday(year: int, month: int) -> int:
    """Day of the month of the first Tuesday."""
    weekday = datetime(year, month, 1).weekday()  # Monday = 0
    return 1 + (1 - weekday) % 7


def generator_test_running(local: datetime) -> bool:
    """Whether the monthly on-load generator test runs at this local time.

    First Tuesday of the month, 10:00 to 10:30 local (start inclusive, end exclusive).
    """
    if local.day != first_tuesday(local.year, local.month):
        return False
    minutes = local.hour * 60 + local.minute + local.second / 60.0
    return 600.0 <= minutes < 630.0


def solar_elevation_sin(ts_s: float, lat_deg: float, lon_deg: float) -> float:
    """Sine of the sun's elevation at a place and Unix time (simple declination model)."""
    utc = datetime.fromtimestamp(ts_s, UTC)
    doy = utc.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    solar_hour = utc.hour + utc.minute / 60.0 + utc.second / 3600.0 + lon_deg / 15.0
    hour_angle = math.radians(15.0 * (solar_hour - 12.0))
    lat = math.radians(lat_deg)
    return math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)


@dataclass
class SiteState:
    """The site's physical state at one instant; powers in kW, flows in L/s."""

    ts_s: float
    outdoor_c: float
    utilisation: float
    it_input_kw: float
    pdu_output_kw: float
    ups_output_kw: float
    ups_input_kw: float
    cooling_kw: float
    free_cooling_fraction: float
    lighting_kw: float
    other_kw: float
    unmetered_kw: float
    facility_kw: float  # E_DC rate: everything inside the boundary
    solar_kw: list[float] = field(default_factory=list)  # per renewable_onsite meter
    generator_kw: float = 0.0
    grid_kw: float = 0.0
    heat_reuse_kw: float = 0.0
    water_l_per_s: float = 0.0

    @property
    def pue(self) -> float:
        """Instantaneous PUE at Category 1 (for inspection only; report energy ratios)."""
        return self.facility_kw / self.ups_output_kw


class SiteSim:
    """One simulated site. Call :meth:`step` with increasing timestamps."""

    def __init__(self, site: Site, seed: int) -> None:
        self.site = site
        self.profile = climate_profile(site)
        self.lat_deg, self.lon_deg = site_location(site)
        self.tz = ZoneInfo(site.timezone)
        rng = random.Random(_seed_for(seed, site.name))
        self._rng = rng
        p = self.profile
        self._weather = _OU(rng, p.weather_sigma_c, p.weather_tau_seconds)
        self._util_noise = _OU(rng, 0.015, 2 * 3600.0)
        self._cloud = _OU(rng, 0.3, 3600.0)
        self._util_base = p.utilisation_base + rng.uniform(-0.03, 0.03)
        self._meters = list(site.meters)
        self._by_name = {m.name: m for m in self._meters}
        # Fixed shares within a role, with slow drift for IT meters (racks come and go).
        self._weight = {m.name: rng.uniform(0.7, 1.3) for m in self._meters}
        self._drift = {
            m.name: _OU(rng, 0.03, 6 * 3600.0) for m in self._meters if m.role is Role.IT
        }
        self._energy_wh = {m.name: rng.uniform(1e6, 5e9) for m in self._meters}
        self._water_l = {m.name: rng.uniform(1e5, 5e8) for m in self._meters}
        self._last_power_w: dict[str, float] = {}
        self._last_flow: dict[str, float] = {}
        self._last_ts: float | None = None
        self.state: SiteState | None = None

    # -- physics -------------------------------------------------------------------------

    def _outdoor_c(self, ts_s: float, local: datetime) -> float:
        p = self.profile
        doy = local.timetuple().tm_yday
        season = p.seasonal_amp_c * math.cos(2 * math.pi * (doy - p.warmest_day_of_year) / 365.25)
        if self.lat_deg < 0 and p is TEMPERATE:
            season = -season
        hour = local.hour + local.minute / 60.0
        diurnal = p.diurnal_amp_c * math.cos(2 * math.pi * (hour - 15.0) / 24.0)
        return p.mean_temp_c + season + diurnal + self._weather.x

    def _physics(self, ts_s: float, dt_s: float) -> SiteState:
        p = self.profile
        inst = self.site.installed_it_kw
        local = datetime.fromtimestamp(ts_s, self.tz)
        hour = local.hour + local.minute / 60.0
        weekend = local.weekday() >= 5
        office = (not weekend) and 8.0 <= hour < 18.0

        self._weather.step(dt_s)
        self._util_noise.step(dt_s)
        self._cloud.step(dt_s)
        outdoor = self._outdoor_c(ts_s, local)

        util = (
            self._util_base
            + 0.05 * math.cos(2 * math.pi * (hour - 15.0) / 24.0)
            - (0.04 if weekend else 0.0)
            + self._util_noise.x
        )
        util = _clamp(util, 0.3, 0.95)
        it_input = util * inst
        pdu_out = it_input * 1.005
        ups_out = pdu_out * (1.0 + p.pdu_loss_fraction)
        rating = inst * p.ups_capacity_factor
        x = ups_out / rating
        a, b, c = p.ups_loss_abc
        ups_in = ups_out + rating * (a + b * x + c * x * x)

        lighting = inst * 0.008 * (1.0 if 7.0 <= hour < 19.0 else 0.6)
        other = inst * (0.015 + (0.005 if office else 0.0))
        heat = ups_in + lighting + 0.5 * other
        span = p.free_none_above_c - p.free_full_below_c
        free = _clamp((p.free_none_above_c - outdoor) / span, 0.0, 1.0)
        cop = _clamp(p.cop_intercept - p.cop_slope_per_c * outdoor, p.cop_min, p.cop_max)
        compressors = heat * (1.0 - free) / cop
        cooling = heat * p.fan_pump_fraction + 0.01 * inst + compressors
        inside = ups_in + cooling + lighting + other
        facility = inside / 0.99
        unmetered = facility - inside

        sin_elev = solar_elevation_sin(ts_s, self.lat_deg, self.lon_deg)
        winter = 0.5 * (1 - math.cos(2 * math.pi * (local.timetuple().tm_yday - 197) / 365.25))
        cloudiness = _clamp(p.cloud_mean + p.cloud_winter_extra * winter + self._cloud.x, 0, 1)
        clear = max(sin_elev, 0.0) ** 1.2 if sin_elev > 0 else 0.0
        sun = clear * 0.8 * (1.0 - 0.75 * cloudiness)
        solar = [
            inst * p.solar_kwp_fraction * sun
            for m in self._meters
            if m.role is Role.RENEWABLE_ONSITE
        ]
        gen = 0.5 * facility if generator_test_running(local) else 0.0
        grid = max(facility - sum(solar) - gen, 0.0)

        if p.heat_reuse_demand_driven:
            reuse = heat * p.heat_reuse_fraction * _clamp((18.0 - outdoor) / 15.0, 0.1, 1.0)
        else:
            reuse = heat * p.heat_reuse_fraction
        water_l_per_h = heat * (1.8 * (1.0 - free) + 0.2 * free)

        return SiteState(
            ts_s=ts_s,
            outdoor_c=outdoor,
            utilisation=util,
            it_input_kw=it_input,
            pdu_output_kw=pdu_out,
            ups_output_kw=ups_out,
            ups_input_kw=ups_in,
            cooling_kw=cooling,
            free_cooling_fraction=free,
            lighting_kw=lighting,
            other_kw=other,
            unmetered_kw=unmetered,
            facility_kw=facility,
            solar_kw=solar,
            generator_kw=gen,
            grid_kw=grid,
            heat_reuse_kw=reuse,
            water_l_per_s=water_l_per_h / 3600.0,
        )

    # -- meters --------------------------------------------------------------------------

    def _role_power_kw(self, st: SiteState) -> dict[Role, float]:
        return {
            Role.FACILITY: st.facility_kw,
            Role.COOLING: st.cooling_kw,
            Role.LIGHTING: st.lighting_kw,
            Role.OTHER_OVERHEAD: st.other_kw,
            Role.GRID_IMPORT: st.grid_kw,
            Role.GENERATOR: st.generator_kw,
            Role.HEAT_REUSE: st.heat_reuse_kw,
        }

    def _meter_power_kw(self, st: SiteState, local: datetime) -> dict[str, float]:
        """Power of every non-water meter, with sub-meters folded into their parents."""
        out: dict[str, float] = {}
        inst = self.site.installed_it_kw
        roles = self._role_power_kw(st)
        it_at = {
            ITPoint.IT_INPUT: st.it_input_kw,
            ITPoint.PDU_OUTPUT: st.pdu_output_kw,
            ITPoint.UPS_OUTPUT: st.ups_output_kw,
        }
        office = local.weekday() < 5 and 8 <= local.hour < 18
        solar_iter = iter(st.solar_kw)
        by_role: dict[Role, list[str]] = {}
        for m in self._meters:
            if m.role is Role.RENEWABLE_ONSITE:
                out[m.name] = next(solar_iter)
            elif m.role is not Role.WATER:
                by_role.setdefault(m.role, []).append(m.name)
        for role, names in by_role.items():
            parents = [n for n in names if self._by_name[n].sign == 1]
            subs = [n for n in names if self._by_name[n].sign == -1]
            if role is Role.IT:
                # All IT meters share one point: the config validates a single category.
                total = it_at[self._by_name[names[0]].point or ITPoint.UPS_OUTPUT]
            else:
                total = roles[role]
            sub_total = 0.0
            for n in subs:
                if role is Role.FACILITY:
                    load = inst * 0.025 * (1.0 if office else 0.4)
                else:
                    load = total * 0.04
                out[n] = load
                sub_total += load
            if role is Role.IT:
                w = {n: self._weight[n] * (1.0 + self._drift[n].x) for n in parents}
            else:
                w = {n: self._weight[n] for n in parents}
            wsum = sum(w.values()) or 1.0
            for n in parents:
                out[n] = (total + sub_total) * w[n] / wsum
        return out

    def step(self, ts_s: float) -> list[tuple[str, Fields]]:
        """Advance to ``ts_s`` and return (meter, fields) for every configured meter."""
        dt = 0.0 if self._last_ts is None else ts_s - self._last_ts
        if dt < 0:
            raise ValueError(f"time went backwards: {ts_s} after {self._last_ts}")
        for ou in self._drift.values():
            ou.step(dt)
        st = self._physics(ts_s, dt)
        self.state = st
        local = datetime.fromtimestamp(ts_s, self.tz)
        power_kw = self._meter_power_kw(st, local)
        water_meters = [m.name for m in self._meters if m.role is Role.WATER]
        wsum = sum(self._weight[n] for n in water_meters) or 1.0
        out: list[tuple[str, Fields]] = []
        for m in self._meters:
            name = m.name
            if m.role is Role.WATER:
                flow = st.water_l_per_s * self._weight[name] / wsum
                if self._last_ts is not None:
                    self._water_l[name] += (self._last_flow[name] + flow) / 2.0 * dt
                self._last_flow[name] = flow
                out.append((name, {"water_l": round(self._water_l[name], 3)}))
                continue
            p_w = round(power_kw[name] * 1000.0, 1)
            if self._last_ts is not None:
                self._energy_wh[name] += (self._last_power_w[name] + p_w) / 2.0 * dt / 3600.0
            self._last_power_w[name] = p_w
            fields: Fields = {"power_w": p_w, "energy_wh": round(self._energy_wh[name], 3)}
            if m.role is Role.COOLING:
                fields["temp_c"] = round(st.outdoor_c, 2)
            out.append((name, fields))
        self._last_ts = ts_s
        return out


def iter_steps(
    settings: Settings, start_s: float, duration_s: float | None, step_s: float, seed: int
) -> Iterator[tuple[float, str, list[tuple[str, Fields]]]]:
    """Yield (ts, site, [(meter, fields), ...]) for each step and site, in time order.

    Timestamps are ``start_s + i * step_s`` for i = 0, 1, ... while below
    ``start_s + duration_s`` (forever when ``duration_s`` is None).
    """
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    sims = [SiteSim(site, seed) for site in settings.sites]
    i = 0
    while True:
        ts = start_s + i * step_s
        if duration_s is not None and ts >= start_s + duration_s:
            return
        for sim in sims:
            yield ts, sim.site.name, sim.step(ts)
        i += 1


def local_time(site: Site, ts_s: float) -> datetime:
    """The site's local wall-clock time at a Unix timestamp."""
    return datetime.fromtimestamp(ts_s, ZoneInfo(site.timezone))


def next_generator_test_s(site: Site, after_s: float) -> float:
    """Unix time of the next monthly generator test start at or after ``after_s``."""
    tz = ZoneInfo(site.timezone)
    local = datetime.fromtimestamp(after_s, tz)
    year, month = local.year, local.month
    for _ in range(3):
        day = first_tuesday(year, month)
        start = datetime(year, month, day, 10, 0, tzinfo=tz)
        if start.timestamp() >= after_s:
            return start.timestamp()
        month += 1
        if month > 12:
            year, month = year + 1, 1
    raise AssertionError("unreachable: a first Tuesday exists every month")


__all__ = [
    "PUE_RANGE",
    "TEMPERATE",
    "TROPICAL",
    "ClimateProfile",
    "Fields",
    "SiteSim",
    "SiteState",
    "climate_profile",
    "first_tuesday",
    "generator_test_running",
    "iter_steps",
    "local_time",
    "next_generator_test_s",
    "site_location",
    "solar_elevation_sin",
]
