"""The forecaster contract of the drought twin, the monthly inputs it reads, and persistence.

A forecaster turns the monthly history of a grid (inputs and drought indices up
to the issue month, the last time step) into forecast maps of its targets at
several leads. The twin (:mod:`hydrology.twin`) only talks to this contract, so
a trained network, an analogue baseline or persistence are interchangeable.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import xarray as xr

from hydrology.aggregate import monthly_mean
from hydrology.indices import monthly_precip_rate, monthly_soil_moisture, monthly_water_balance
from hydrology.pet import PetMethod, monthly_pet, pet_source
from twins.errors import DataError

#: Variables of the monthly input dataset and their units.
MONTHLY_UNITS = {"pr": "mm/d", "wb": "mm/d", "sm": "m3 m-3", "t2m": "K"}


def monthly_inputs(
    ds: xr.Dataset, pet: PetMethod = "pev", tas_before: xr.DataArray | None = None
) -> xr.Dataset:
    """Monthly aggregates of a canonical daily (or monthly) dataset.

    Args:
        ds: Canonical dataset, dims ``(time, lat, lon)``, with ``tp`` and optionally
            ``pev``, ``swvl1``, ``t2m`` (``mn2t``, ``mx2t``) and statics ``lsm``, ``z``.
        pet: Where the water balance's PET comes from (:func:`hydrology.pet.pet_source`):
            ``pev`` only as given (the default), or derived from temperature
            (``thornthwaite``, ``hargreaves``, or ``auto``: given ``pev`` first).
        tas_before: Monthly mean temperature (K) of the months before ``ds``, for a
            Thornthwaite PET of a few new months (:func:`hydrology.pet.monthly_pet`).

    Returns:
        Dataset at month starts with ``pr`` (precipitation rate, mm/d), ``wb`` (P - PET,
        mm/d), ``sm`` (soil moisture, m3 m-3), ``t2m`` (monthly mean, K) where available,
        plus the statics unchanged. A derived ``wb`` names its method in
        ``attrs["pet_method"]``.

    Raises:
        DataError: If ``tp`` is missing.
    """
    if "tp" not in ds:
        raise DataError("monthly inputs need precipitation 'tp'")
    out = {"pr": monthly_precip_rate(ds["tp"])}
    source = pet_source(ds, pet)
    if source == "pev":
        out["wb"] = monthly_water_balance(ds["tp"], ds["pev"], precip_rate=out["pr"])
    elif source is not None:
        evap = monthly_pet(ds, source, tas_before if source == "thornthwaite" else None)
        out["wb"] = (out["pr"] - evap).assign_attrs(
            units="mm d-1",
            long_name="climatic water balance P - PET",
            pet_method=source,
            cell_methods=evap.attrs["cell_methods"],
        )
        out["wb"].name = "wb"
    if "swvl1" in ds:
        out["sm"] = monthly_soil_moisture(ds["swvl1"])
    if "t2m" in ds:
        t = monthly_mean(ds["t2m"])
        t.attrs.update(ds["t2m"].attrs)
        out["t2m"] = t
    res = xr.Dataset(out)
    for name in ("lsm", "z"):
        if name in ds:
            res[name] = ds[name]
    return res


def index_inputs(monthly: xr.Dataset) -> xr.Dataset:
    """Monthly inputs -> the canonical variables :class:`~hydrology.indices.DroughtIndices`
    reads, as rates in mm/d: ``tp`` = ``pr``, ``pev`` = ``wb - pr`` (so that P - PET =
    ``tp + pev`` = ``wb``), ``swvl1`` = ``sm``, where present.

    Args:
        monthly: :func:`monthly_inputs` output, dims ``(time, lat, lon)``.

    Returns:
        Dataset with ``tp``, ``pev``, ``swvl1`` where their sources are present.
    """
    out = {}
    if "pr" in monthly:
        out["tp"] = monthly["pr"].assign_attrs(units="mm/d")
        if "wb" in monthly:
            out["pev"] = (monthly["wb"] - monthly["pr"]).assign_attrs(units="mm/d")
    if "sm" in monthly:
        out["swvl1"] = monthly["sm"].assign_attrs(units="m3 m-3")
    return xr.Dataset(out)


def forecast_dataset(
    values: dict[str, np.ndarray], leads: tuple[int, ...], issue: pd.Timestamp, like: xr.DataArray
) -> xr.Dataset:
    """Wrap forecast arrays as a labelled dataset.

    Args:
        values: Target name -> array ``(lead, lat, lon)`` (index units, dimensionless).
        leads: Lead times in months.
        issue: Issue month (the last observed month).
        like: A ``(lat, lon)`` field whose coordinates the maps take.

    Returns:
        Dataset with one variable per target, dims ``(lead, lat, lon)``, a ``valid_time``
        coordinate per lead and the issue month in ``attrs["issue_time"]``.
    """
    valid = [issue + pd.DateOffset(months=k) for k in leads]
    coords = {
        "lead": ("lead", list(leads), {"units": "months"}),
        "valid_time": ("lead", pd.DatetimeIndex(valid)),
    }
    coords.update({d: (d, like[d].values, like[d].attrs) for d in like.dims})
    data = {
        name: (("lead", *like.dims), arr.astype(np.float32), {"units": "1"})
        for name, arr in values.items()
    }
    return xr.Dataset(data, coords=coords, attrs={"issue_time": str(issue.date())})


@runtime_checkable
class Forecaster(Protocol):
    """Anything that forecasts drought-index maps from a monthly history.

    Attributes:
        targets: Forecast variables, e.g. ``("spi_3", "ssmi_1")``.
        leads: Lead times in months, e.g. ``(1, 2, 3)``.
        history_months: Months of history :meth:`forecast` needs (including the issue month).
    """

    targets: tuple[str, ...]
    leads: tuple[int, ...]
    history_months: int

    def forecast(self, monthly: xr.Dataset) -> xr.Dataset:
        """Forecast from ``monthly`` (inputs and indices, dims ``(time, lat, lon)``), whose
        last time step is the issue month; returns :func:`forecast_dataset` output."""
        ...


class PersistenceForecaster:
    """Persistence: every lead repeats the issue month's index values.

    Args:
        targets: Index variables to persist.
        leads: Lead times in months.
    """

    def __init__(self, targets: tuple[str, ...] = ("spi_3",), leads: tuple[int, ...] = (1, 2, 3)):
        self.targets, self.leads, self.history_months = tuple(targets), tuple(leads), 1

    def forecast(self, monthly: xr.Dataset) -> xr.Dataset:
        """Repeat the last month of each target for every lead."""
        missing = [t for t in self.targets if t not in monthly]
        if missing:
            raise DataError(f"persistence forecast needs {missing} in the monthly history")
        last = monthly.isel(time=-1)
        issue = pd.Timestamp(monthly["time"].values[-1])
        values = {
            t: np.repeat(last[t].values[None], len(self.leads), axis=0) for t in self.targets
        }
        return forecast_dataset(values, self.leads, issue, last[self.targets[0]])
