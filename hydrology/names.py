"""Variable names and unit spellings of the climate products the drought twin reads.

Every product names precipitation its own way; :func:`canonical_names` maps them to the ERA5
short names the package uses (``reference/hydrology.md`` section 10) and records where each
came from::

    canonical  ERA5  E-OBS  CF/CMOR     GPCC/CPC/CHIRPS (NOAA PSL)  CRU TS  Daymet/nClimGrid
    tp         tp    rr     pr          precip                      pre     prcp
    t2m        t2m   tg     tas         -                           tmp     -
    mn2t/mx2t  ..    tn/tx  tasmin/max  -                           tmn/tmx tmin/tmax
    e          e     -      evspsbl     -                           -       -
    pev        pev   -      evspsblpot  -                           pet     -
    lsm        lsm   -      sftlf       -                           -       -
    z          z     elev.  orog        -                           -       -

A variable whose name is not listed but whose CF ``standard_name`` says precipitation
(``precipitation_amount``, ``precipitation_flux``, ``lwe_precipitation_rate``,
``lwe_thickness_of_precipitation_amount``) is read as ``tp`` too.

Units stay as the source wrote them, with two kinds of rewrite (:func:`canonical_units`):

- spellings pint cannot parse (GRIB's ``m of water equivalent``, ``(0 - 1)``, ``degrees
  Celsius``, ``mm/mon``) become their CF spelling;
- an amount *per month* (CRU ``mm/month``, CHIRPS monthly ``mm/month``) becomes ``mm`` per
  time step when the steps are calendar months: pint's ``month`` is a fixed 30.44 days,
  which no calendar month is. On other steps such a unit is refused.

Units as products write them (all read without edits): GPCC ``mm`` (per month), CPC
``mm`` (per day), CHIRPS ``mm/day`` or ``mm/month``, E-OBS ``mm`` (per day), CRU ``mm/month``,
CF ``kg m-2 s-1``, ERA5 ``m`` (per step; a monthly mean is per day: :mod:`hydrology.layouts`).
"""

from __future__ import annotations

import logging
import re

import xarray as xr

from twins.errors import DataError

__all__ = [
    "ALIASES",
    "PRECIP_STANDARD_NAMES",
    "UNIT_SPELLINGS",
    "canonical_names",
    "canonical_units",
    "per_month_amount",
]

logger = logging.getLogger(__name__)

#: Source variable name -> (canonical name, convention).
ALIASES: dict[str, tuple[str, str]] = {
    # E-OBS
    "rr": ("tp", "eobs"),
    "tg": ("t2m", "eobs"),
    "tn": ("mn2t", "eobs"),
    "tx": ("mx2t", "eobs"),
    "elevation": ("z", "eobs"),
    # CF / CMOR (e.g. the xclim ERA5 city file, CMIP output)
    "pr": ("tp", "cf"),
    "tas": ("t2m", "cf"),
    "tasmin": ("mn2t", "cf"),
    "tasmax": ("mx2t", "cf"),
    "evspsbl": ("e", "cf"),
    "evspsblpot": ("pev", "cf"),
    "sftlf": ("lsm", "cf"),
    "orog": ("z", "cf"),
    # GPCC, CPC, CHIRPS, CMAP, GPCP as NOAA PSL and CHG distribute them
    "precip": ("tp", "psl"),
    # CRU TS
    "pre": ("tp", "cru"),
    "tmp": ("t2m", "cru"),
    "tmn": ("mn2t", "cru"),
    "tmx": ("mx2t", "cru"),
    "pet": ("pev", "cru"),
    # Daymet, nClimGrid, Livneh
    "prcp": ("tp", "daymet"),
    "tmin": ("mn2t", "daymet"),
    "tmax": ("mx2t", "daymet"),
}
#: CF standard names that identify precipitation whatever the variable is called.
PRECIP_STANDARD_NAMES = (
    "precipitation_amount",
    "precipitation_flux",
    "lwe_precipitation_rate",
    "lwe_thickness_of_precipitation_amount",
)
#: Conventions whose evaporation variables are negative for evaporation (ECMWF).
_NEGATIVE_EVAPORATION = ("era5",)

#: GRIB / product spellings that pint cannot parse -> CF spelling.
UNIT_SPELLINGS: dict[str, str] = {
    "m of water equivalent": "m",
    "(0 - 1)": "1",
    "0-1": "1",
    "~": "1",
    "fraction": "1",
    "degrees C": "degC",
    "degrees Celsius": "degC",
    "degree Celsius": "degC",
    "deg C": "degC",
    "deg_C": "degC",
    "degrees_C": "degC",
}
# "mm/month", "mm month-1", "mm/mon", "mm per month", "kg m-2 month-1", "mm/mo"
_PER_MONTH = re.compile(
    r"^\s*(?P<amount>.+?)\s*(?:/\s*|\s+per\s+|\s+)(?:months?|mon|mo)(?:\s*\*{0,2}\s*-?1)?\s*$",
    re.IGNORECASE,
)


def per_month_amount(units: str) -> str | None:
    """The amount unit of a per-month unit (``"mm/month"`` -> ``"mm"``), else None."""
    m = _PER_MONTH.match(units)
    if m is None:
        return None
    amount = m.group("amount").strip()
    return amount or None


def canonical_names(ds: xr.Dataset, source: str, canonical: tuple[str, ...]) -> xr.Dataset:
    """Rename product variables to canonical names and record where they came from.

    Args:
        ds: Dataset as read (any product naming).
        source: File name for the messages.
        canonical: The canonical variable names (``hydrology.io.CANONICAL``).

    Returns:
        ``ds`` with canonical names; each canonical variable carries ``attrs["source_name"]``,
        ``attrs["source_convention"]`` and, for ``e``/``pev``, ``attrs["evaporation_sign"]``.
        When a file has both a canonical name and an alias of it (``tp`` and ``pr``), the
        canonical one is kept and the alias left under its own name (logged).
    """
    renames: dict[str, str] = {}
    conventions: dict[str, str] = {}
    for name in [str(v) for v in ds.data_vars]:
        alias = ALIASES.get(name)
        if alias is None and name not in canonical:
            std = str(ds[name].attrs.get("standard_name", ""))
            if std in PRECIP_STANDARD_NAMES:
                alias = ("tp", "cf")
        if alias is None:
            continue
        target, convention = alias
        if target in ds.data_vars or target in renames.values():
            logger.warning("%s: both %r and %r present; keeping %r", source, name, target, target)
            continue
        renames[name] = target
        conventions[target] = convention
    ds = ds.rename(renames)
    back = {v: k for k, v in renames.items()}
    for name in [str(v) for v in ds.data_vars if v in canonical]:
        da = ds[name]
        convention = conventions.get(name, "era5")
        da.attrs.setdefault("source_name", back.get(name, name))
        da.attrs.setdefault("source_convention", convention)
        if name in ("e", "pev"):
            sign = "negative" if convention in _NEGATIVE_EVAPORATION else "positive"
            da.attrs.setdefault("evaporation_sign", sign)
    return ds


def canonical_units(ds: xr.Dataset, source: str, monthly: bool) -> xr.Dataset:
    """Rewrite unit spellings pint cannot read, and per-month amounts on monthly steps.

    Args:
        ds: Dataset with canonical names.
        source: File name for the messages.
        monthly: The time step is one calendar month (:func:`hydrology.timeaxis.is_monthly`).

    Returns:
        ``ds`` with CF unit spellings; a rewritten unit keeps the original in
        ``attrs["source_units"]``.

    Raises:
        DataError: A per-month unit on steps that are not calendar months.
    """
    for name in [str(v) for v in ds.data_vars]:
        da = ds[name]
        u = da.attrs.get("units")
        if not isinstance(u, str):
            continue
        text = u.strip()
        new = UNIT_SPELLINGS.get(text)
        amount = per_month_amount(text)
        if amount is not None:
            if not monthly:
                raise DataError(
                    f"{source}: variable '{name}' has units '{u}' (an amount per month) but its "
                    "time steps are not calendar months",
                    hint="give monthly steps, or units per time step (mm) or per day (mm/day)",
                )
            new = UNIT_SPELLINGS.get(amount, amount)
        if new is not None and new != u:
            da.attrs.setdefault("source_units", u)
            da.attrs["units"] = new
    return ds
