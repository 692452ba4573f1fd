"""Potential evaporation where a record does not give it: derived from temperature via xclim.

SPEI needs the climatic water balance P - PET. ERA5 gives PET as ``pev``; most other
records (CRU, E-OBS, station and model data) give temperature instead, from which xclim
derives PET (:func:`xclim.indices.potential_evapotranspiration`):

* ``hargreaves`` (Hargreaves & Samani 1985, xclim ``HG85``): daily minimum and maximum
  temperature (``mn2t``, ``mx2t``) and latitude; it uses the diurnal range as a proxy for
  radiation, so it needs daily data;
* ``thornthwaite`` (Thornthwaite 1948, xclim ``TW48``): monthly mean temperature (``t2m``,
  or the mean of ``mn2t`` and ``mx2t``) and latitude (day length); it works on monthly
  records.

:func:`pet_source` picks what a record supports for a requested method (``auto``: ``pev``
when given, else Hargreaves on daily extremes, else Thornthwaite, else none);
:func:`monthly_pet` computes it as a positive monthly mean rate in mm/d;
:func:`pet_variables` names what a source reads (what a twin's new months must hold).

Thornthwaite's heat index sums a calendar year's twelve monthly temperatures. A twin's new
month has no complete year around it, so there (``tas_before`` given) each month's heat
index sums the twelve months ending with it: the previous months come from the twin's
history. For a December the two are the same year; for other months they differ by the
year-to-year change of the heat index.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from xclim.core.units import convert_units_to
from xclim.indices import potential_evapotranspiration

from hydrology.aggregate import monthly_mean
from hydrology.units import to_units
from twins.errors import DataError

PetMethod = Literal["auto", "pev", "hargreaves", "thornthwaite"]
"""How PET is obtained: as given (``pev``), derived from temperature, or the best available."""

PetSource = Literal["pev", "hargreaves", "thornthwaite"]


def _daily(ds: xr.Dataset) -> bool:
    """True when the record's steps are at most a day long."""
    t = ds["time"].values
    return t.size > 1 and t.dtype.kind == "M" and bool(np.diff(t).max() <= np.timedelta64(1, "D"))


def pet_source(ds: xr.Dataset, method: PetMethod) -> PetSource | None:
    """The PET a record supports for ``method``, or None when it supports none.

    Args:
        ds: Canonical dataset (daily or monthly).
        method: ``pev`` (given only), ``hargreaves`` (daily ``mn2t`` and ``mx2t``),
            ``thornthwaite`` (``t2m`` or ``mn2t`` and ``mx2t``) or ``auto`` (the first of
            these the record supports).
    """
    extremes = "mn2t" in ds and "mx2t" in ds
    ok: dict[PetSource, bool] = {
        "pev": "pev" in ds,
        "hargreaves": extremes and _daily(ds),
        "thornthwaite": "t2m" in ds or extremes,
    }
    if method != "auto":
        return method if ok[method] else None
    return next((k for k, v in ok.items() if v), None)


def pet_variables(ds: xr.Dataset, source: PetSource) -> list[str]:
    """The record's variables a PET source reads: ``["pev"]``, ``["mn2t", "mx2t"]`` or
    ``["t2m"]`` (Thornthwaite on ``mn2t``/``mx2t`` where ``ds`` has no ``t2m``)."""
    if source == "pev":
        return ["pev"]
    if source == "thornthwaite" and "t2m" in ds:
        return ["t2m"]
    return ["mn2t", "mx2t"]


def _kelvin(ds: xr.Dataset, name: str) -> xr.DataArray:
    return to_units(ds[name], "K").assign_attrs(units="K")


def monthly_pet(
    ds: xr.Dataset,
    source: Literal["hargreaves", "thornthwaite"],
    tas_before: xr.DataArray | None = None,
) -> xr.DataArray:
    """Monthly mean potential evaporation derived from temperature, positive, in mm/d.

    (Given ``pev`` goes through :func:`hydrology.indices.monthly_water_balance` instead.)

    Args:
        ds: Canonical dataset, dims ``(time, lat, lon)`` with a ``lat`` coordinate in
            degrees north, holding what ``source`` needs.
        source: ``hargreaves`` or ``thornthwaite``.
        tas_before: Thornthwaite only: monthly mean temperature (K, month starts, dims
            ``(time, lat, lon)``) of at least the 11 months before ``ds`` (a twin's
            history). Given, each month's heat index sums the 12 months ending with it
            instead of its calendar year (see the module docstring).

    Returns:
        ``(time, lat, lon)`` float64 at month starts, mm/d, ``attrs["pet_method"]`` set; 0
        in a Thornthwaite year that never thaws.

    Raises:
        DataError: A variable the method needs is missing, or ``tas_before`` lacks one of
            the 11 months before a month of ``ds``.
    """
    need = {
        "hargreaves": ("mn2t", "mx2t"),
        "thornthwaite": ("t2m",) if "t2m" in ds else ("mn2t", "mx2t"),
    }[source]
    missing = [v for v in need if v not in ds]
    if missing:
        raise DataError(f"PET by {source} needs {missing}, absent from the record")
    if source == "hargreaves":
        rate = _xclim(tasmin=_kelvin(ds, "mn2t"), tasmax=_kelvin(ds, "mx2t"), method="HG85")
    else:
        if "t2m" in ds:
            tas = monthly_mean(_kelvin(ds, "t2m"))
        else:
            tas = (monthly_mean(_kelvin(ds, "mn2t")) + monthly_mean(_kelvin(ds, "mx2t"))) / 2
        tas = tas.assign_attrs(units="K")
        if tas_before is None:
            rate = _xclim(tas=tas, method="TW48")
        else:
            rate = _thornthwaite_trailing(tas, tas_before)
        # A year without a month above 0 degC has heat index 0 and xclim's 0/0 is NaN:
        # no evaporative demand, PET 0 (a missing temperature stays missing).
        rate = rate.where(rate.notnull() | tas.isnull(), 0.0)
    out = monthly_mean(rate).transpose("time", ...)
    out.attrs = {
        "units": "mm d-1",
        "long_name": "potential evaporation",
        "pet_method": source,
        "cell_methods": "time: mean within months",
    }
    out.name = "pet"
    return out


def _xclim(method: str, **temps: xr.DataArray) -> xr.DataArray:
    """xclim's PET (kg m-2 s-1) as mm/d, latitude from the grid."""
    first = next(iter(temps.values()))
    with warnings.catch_warnings():  # xclim warns about its frequency inference on short input
        warnings.simplefilter("ignore", UserWarning)
        pet = potential_evapotranspiration(**temps, lat=first["lat"], method=method)
    return convert_units_to(pet, "mm/d", context="hydro")


def _thornthwaite_trailing(tas: xr.DataArray, before: xr.DataArray) -> xr.DataArray:
    """Thornthwaite PET (xclim, mm/d) of each month of ``tas`` with the heat index of the 12
    months ending with it.

    The 12 months are relabelled into the month's own calendar year, each keeping its
    month of the year (so its day length): xclim's calendar-year heat index of that year is
    then the trailing one, and the month itself keeps its true date.
    """
    before = to_units(before, "K").assign_attrs(units="K")
    series = xr.concat([before.sel(time=before["time"] < tas["time"][0]), tas], "time")
    stamps = pd.DatetimeIndex(series["time"].values)
    out = []
    for t in pd.DatetimeIndex(tas["time"].values):
        first = t - pd.DateOffset(months=11)
        window = series.isel(time=np.flatnonzero((stamps >= first) & (stamps <= t)))
        have = pd.DatetimeIndex(window["time"].values)
        if have.size != 12 or have[0] != first:
            raise DataError(
                f"Thornthwaite PET of {t:%Y-%m} needs monthly temperature 't2m' of the 12 "
                f"months {first:%Y-%m}..{t:%Y-%m}; {have.size} of them are available"
            )
        year = [pd.Timestamp(year=t.year, month=m.month, day=1) for m in have]
        relabelled = window.assign_coords(time=year).sortby("time")
        out.append(_xclim(tas=relabelled.assign_attrs(units="K"), method="TW48").sel(time=[t]))
    return xr.concat(out, "time")
