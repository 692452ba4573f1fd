"""What-if scenarios of the drought twin: a precipitation factor and a temperature shift.

:meth:`hydrology.twin.DroughtTwin.simulate` applies a :class:`Scenario` to a copy of the
twin's monthly history (:func:`apply_scenario`), recomputes the indices of the modified months
and forecasts from it; the twin directory is never written.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hydrology.timeaxis import month_label

__all__ = [
    "DEFAULT_PET_SENSITIVITY",
    "HARGREAVES_OFFSET_C",
    "Region",
    "Scenario",
    "apply_scenario",
]

log = logging.getLogger(__name__)

#: Hargreaves-Samani temperature offset [degC]: PET is proportional to (T + 17.8).
HARGREAVES_OFFSET_C = 17.8
#: PET sensitivity used when the history has no temperature [fraction per K].
DEFAULT_PET_SENSITIVITY = 0.04


class Region(BaseModel):
    """A lat/lon box (inclusive bounds, degrees north / east)."""

    model_config = ConfigDict(extra="forbid")

    lat_min: float = Field(ge=-90, le=90)
    lat_max: float = Field(ge=-90, le=90)
    lon_min: float
    lon_max: float

    @model_validator(mode="after")
    def _ordered(self) -> Region:
        if self.lat_min > self.lat_max or self.lon_min > self.lon_max:
            raise ValueError("region bounds must be (min <= max) for lat and lon")
        return self


class Scenario(BaseModel):
    """A what-if applied to the twin's recent monthly history.

    Precipitation is scaled by ``precip_scale`` (``pr``, and ``wb`` consistently:
    ``wb' = s pr - PET``). A temperature shift changes ``t2m`` by ``temp_shift`` and potential
    evapotranspiration through the Hargreaves-Samani sensitivity
    ``PET' = PET (T + dT + 17.8) / (T + 17.8)`` (T the monthly mean in degC, as in the synthetic
    generator), or by ``DEFAULT_PET_SENSITIVITY`` per K where the history has no ``t2m``.
    Soil moisture is left unchanged (the bucket model is not rerun), so soil-moisture indices
    only change where the forecaster propagates the other inputs.

    Attributes:
        precip_scale: Factor on precipitation (1 = unchanged).
        temp_shift: Temperature shift [K].
        region: Box where the scenario applies; None = the whole grid. Also given as the four
            numbers ``[lat0, lat1, lon0, lon1]`` (``--region LAT0 LAT1 LON0 LON1``).
        months: Apply to the last ``months`` months of the history (None: see start/end).
        start: First month ``"YYYY-MM"`` of the period (with ``end``), instead of ``months``.
        end: Last month ``"YYYY-MM"`` of the period.
    """

    model_config = ConfigDict(extra="forbid")

    precip_scale: float = Field(1.0, ge=0, description="factor on precipitation")
    temp_shift: float = Field(0.0, description="temperature shift [K]")
    region: Region | None = Field(
        None,
        description="box where the scenario applies (degrees; default the whole grid)",
        json_schema_extra={"cli_nargs": 4, "cli_metavar": ("LAT0", "LAT1", "LON0", "LON1")},
    )
    months: int | None = Field(None, ge=1, description="the last N months (default 3)")
    start: str | None = Field(None, description="first month YYYY-MM (with --end)")
    end: str | None = Field(None, description="last month YYYY-MM")

    @field_validator("region", mode="before")
    @classmethod
    def _corners(cls, v: Any) -> Any:
        """``[lat0, lat1, lon0, lon1]`` (any order of the two ends) -> a :class:`Region`."""
        if isinstance(v, list | tuple):
            if len(v) != 4:
                raise ValueError(f"a region is 4 numbers LAT0 LAT1 LON0 LON1, got {list(v)}")
            lat0, lat1, lon0, lon1 = (float(x) for x in v)
            return Region(
                lat_min=min(lat0, lat1),
                lat_max=max(lat0, lat1),
                lon_min=min(lon0, lon1),
                lon_max=max(lon0, lon1),
            )
        return v

    @model_validator(mode="after")
    def _period(self) -> Scenario:
        if self.months is not None and (self.start or self.end):
            raise ValueError("give either 'months' or 'start'/'end', not both")
        for value in (self.start, self.end):
            if value is not None:
                pd.Timestamp(value + "-01")
        if self.months is None and self.start is None and self.end is None:
            self.months = 3
        return self


def apply_scenario(history: xr.Dataset, sc: Scenario) -> tuple[xr.Dataset, tuple[int, int] | None]:
    """A modified copy of a twin's monthly history.

    Args:
        history: Monthly history with ``pr`` and optionally ``wb`` [mm/d] and ``t2m`` [K],
            dims ``(time, lat, lon)``.
        sc: The scenario.

    Returns:
        ``(modified, span)``: the modified copy and the positions of the first and last
        month whose inputs changed (None when the scenario selects no cell-month).
    """
    out = history.copy(deep=True)
    months = [month_label(t) for t in history["time"].values]
    if sc.months is not None:
        sel = np.zeros(len(months), dtype=bool)
        sel[-min(sc.months, len(months)) :] = True
    else:
        lo, hi = sc.start or months[0], sc.end or months[-1]
        sel = np.array([lo <= m <= hi for m in months])
    box = xr.ones_like(history["pr"].isel(time=0), dtype=bool)
    if sc.region is not None:
        r = sc.region
        box = (
            (history["lat"] >= r.lat_min)
            & (history["lat"] <= r.lat_max)
            & (history["lon"] >= r.lon_min)
            & (history["lon"] <= r.lon_max)
        ).transpose(*box.dims)
    mask = xr.DataArray(sel, dims="time", coords={"time": history["time"]}) & box
    if not bool(mask.any()):
        log.warning("scenario selects no cell-month of the history: no change")
        return out, None
    pr = history["pr"]
    pet = pr - history["wb"] if "wb" in history else None
    new_pr = pr * sc.precip_scale
    if pet is not None:
        if sc.temp_shift:
            if "t2m" in history:
                tc = history["t2m"] - 273.15
                factor = (tc + sc.temp_shift + HARGREAVES_OFFSET_C) / (tc + HARGREAVES_OFFSET_C)
                factor = factor.clip(min=0.0)
            else:
                factor = 1.0 + DEFAULT_PET_SENSITIVITY * sc.temp_shift
            new_pet = pet * factor
        else:
            new_pet = pet
        out["wb"] = xr.where(mask, new_pr - new_pet, history["wb"]).assign_attrs(
            history["wb"].attrs
        )
    out["pr"] = xr.where(mask, new_pr, pr).assign_attrs(pr.attrs)
    if "t2m" in history and sc.temp_shift:
        out["t2m"] = xr.where(mask, history["t2m"] + sc.temp_shift, history["t2m"]).assign_attrs(
            history["t2m"].attrs
        )
    for v in out.data_vars:
        if "time" in out[v].dims:
            out[v] = out[v].transpose("time", ...)
    chosen = np.flatnonzero(sel)
    return out, (int(chosen[0]), int(chosen[-1]))
