"""Unit conversions of canonical climate variables, at the point of use.

Units are kept on ingest as the source wrote them (:mod:`hydrology.io`) and converted where a
number is needed: :func:`to_units` handles plain pint conversions, water as mass or depth,
amounts per time step versus rates, and geopotential versus height;
:func:`evaporation_positive` turns the ECMWF sign convention around.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from xclim.core.units import convert_units_to, units, units2pint

from hydrology.timeaxis import is_monthly, time_steps
from twins.errors import DataError

__all__ = [
    "DIMENSIONALITIES",
    "G0",
    "WATER_DENSITY",
    "evaporation_positive",
    "to_units",
]

G0 = 9.80665  # [m s-2]
WATER_DENSITY = 1000.0  # [kg m-3]: 1 kg m-2 of water = 1 mm

_LENGTH = units("m").dimensionality
_RATE = units("m/s").dimensionality
_MASS_AMOUNT = units("kg m-2").dimensionality
_MASS_FLUX = units("kg m-2 s-1").dimensionality
_TEMPERATURE = units("K").dimensionality
_DIMENSIONLESS = units("1").dimensionality
_GEOPOTENTIAL = units("m2 s-2").dimensionality

_WATER = (_LENGTH, _RATE, _MASS_AMOUNT, _MASS_FLUX)
#: Dimensionalities the units of each canonical variable may have.
DIMENSIONALITIES = {
    "tp": _WATER,
    "e": _WATER,
    "pev": _WATER,
    "t2m": (_TEMPERATURE,),
    "mn2t": (_TEMPERATURE,),
    "mx2t": (_TEMPERATURE,),
    "swvl1": (_DIMENSIONLESS,),
    "lsm": (_DIMENSIONLESS,),
    "z": (_GEOPOTENTIAL, _LENGTH),
}


def _kind(q: Any) -> str:
    dim = q.dimensionality
    if dim in (_LENGTH, _MASS_AMOUNT):
        return "amount"
    if dim in (_RATE, _MASS_FLUX):
        return "rate"
    return "other"


def _step_seconds(da: xr.DataArray) -> xr.DataArray | float:
    """Duration of each step: days in the month for monthly records, else the fixed step."""
    if "time" not in da.dims or da.sizes["time"] < 1:
        raise DataError(
            f"variable '{da.name}': cannot convert between amount and rate without a time axis"
        )
    if is_monthly(da):
        return da["time"].dt.days_in_month * 86400.0
    if da.sizes["time"] < 2:
        raise DataError(
            f"variable '{da.name}': cannot convert between amount and rate on a single time "
            "step whose length is not declared (time bounds, delta_t or time_step='month')"
        )
    return float(np.median(time_steps(da.indexes["time"])))


def to_units(da: xr.DataArray, target: str) -> xr.DataArray:
    """Convert ``da`` to ``target`` units at the point of use (lazy for dask arrays).

    Handles, besides plain pint conversions (``K -> degC``, ``% -> 1``):

    - water as mass (``kg m-2``, ``kg m-2 s-1``) <-> depth (``mm``, ``m``, ``mm/d``) with a
      density of 1000 kg m-3;
    - amounts per time step <-> rates, using the time step of ``da`` (fixed steps, or days in
      month for monthly data). ERA5 ``tp`` [m per day] -> ``"mm/day"`` multiplies by 1000.
      Caution: ERA5-Land *monthly means* store the mean **daily** amount; convert those with
      ``"mm"`` and multiply by the days in the month yourself;
    - surface geopotential [m2 s-2] -> height [m] (divided by 9.80665), and back.

    The sign is never changed; see :func:`evaporation_positive`.

    Args:
        da: variable with a ``units`` attribute.
        target: pint/CF unit string, e.g. ``"mm/day"``, ``"mm"``, ``"degC"``, ``"m"``.

    Returns:
        A new DataArray with ``attrs["units"] == target``; other attributes are kept.
    """
    if "units" not in da.attrs:
        raise DataError(f"variable '{da.name}' has no units attribute")
    src = units2pint(da)
    tgt = units2pint(target)
    attrs = dict(da.attrs)
    if src.dimensionality == tgt.dimensionality:
        out = convert_units_to(da, target)
    elif src.dimensionality == _GEOPOTENTIAL and tgt.dimensionality == _LENGTH:
        out = da * (units.Quantity(1.0, src).to("m2 s-2").magnitude / G0)
        out = out * units.Quantity(1.0, "m").to(tgt).magnitude
    elif src.dimensionality == _LENGTH and tgt.dimensionality == _GEOPOTENTIAL:
        out = da * (units.Quantity(1.0, src).to("m").magnitude * G0)
        out = out * units.Quantity(1.0, "m2 s-2").to(tgt).magnitude
    else:
        ks, kt = _kind(src), _kind(tgt)
        if "other" in (ks, kt):
            raise DataError(
                f"variable '{da.name}': cannot convert units '{da.attrs['units']}' to '{target}'"
            )
        rho = units.Quantity(WATER_DENSITY, "kg m-3")
        qs = units.Quantity(1.0, src)
        if src.dimensionality in (_MASS_AMOUNT, _MASS_FLUX):
            qs = qs / rho
        base = "mm" if ks == "amount" else "mm/s"
        out = da * qs.to(base).magnitude  # now in mm or mm/s
        if ks != kt:
            step = _step_seconds(da)
            out = out / step if ks == "amount" else out * step
        qt = units.Quantity(1.0, "mm" if kt == "amount" else "mm/s")
        if tgt.dimensionality in (_MASS_AMOUNT, _MASS_FLUX):
            qt = qt * rho
        out = out * qt.to(tgt).magnitude
    attrs["units"] = target
    out.attrs = attrs
    out.name = da.name
    return out


def evaporation_positive(da: xr.DataArray) -> xr.DataArray:
    """Return evaporation (``e``/``pev``) with evaporation as positive values.

    ERA5 stores evaporation negative (downward-positive fluxes); CF ``evspsbl*`` store it
    positive. Uses ``attrs["evaporation_sign"]`` set on ingest (``"negative"`` if absent and the
    variable is named ``e``/``pev``).
    """
    sign = da.attrs.get("evaporation_sign", "negative" if da.name in ("e", "pev") else None)
    if sign is None:
        raise DataError(f"variable '{da.name}': unknown evaporation sign convention")
    attrs = dict(da.attrs)
    out = -da if sign == "negative" else da.copy()
    attrs["evaporation_sign"] = "positive"
    out.attrs = attrs
    return out
