"""The drought twin: a directory that follows a gridded climate record month by month.

A :class:`DroughtTwin` lives in a :class:`twins.twin.TwinStore` directory (kind
``"hydrology"``). Its products, per committed version (``versions/vNNNNNN/products/``):

* ``indices.nc`` (init only): the fitted index parameters (:meth:`DroughtIndices.save`);
* ``forecaster.<ext>`` (init only, when the forecaster is a trained model file): a copy;
* ``history.nc``: the monthly history an update needs — monthly inputs ``pr``/``wb`` [mm/d],
  ``sm`` [m3 m-3], ``t2m`` [K] where available, the drought indices and the statics
  ``lsm``/``z`` — for the last ``N = max(indices.history_months, forecaster.history_months)
  + HISTORY_MARGIN`` months, dims ``(time, lat, lon)``;
* ``alerts_<YYYY-MM>.nc``: the forecast issued from month ``YYYY-MM`` — per target the forecast
  values (``<target>``, dims ``(lead, lat, lon)``) and the drought category
  (``category_<target>``, int8, CF ``flag_values`` 0/1/2/3 = none / moderate (< -1) / severe
  (< -1.5) / extreme (< -2), -1 = no data).

An update (:meth:`DroughtTwin.update`) validates the new months (grid, variables, whole months
directly after the cursor, not all-NaN), aggregates them to months, transforms the indices with
the stored parameters (new months only; the history fills the accumulation windows), forecasts
the next leads from the last new month and writes the alert maps and the new history — all in
one store transaction: a crash leaves the twin as before or fully updated, the same months
twice are a no-op, and a concurrent update is refused (or waits, ``wait=True``).

:meth:`DroughtTwin.simulate` answers a what-if on a copy of the recent history and never
writes to the twin directory.

Example::

    twin = DroughtTwin.init("twin", daily_ds, PersistenceForecaster(), fitted_indices)
    twin.update("era5land_2021-01.nc")
    twin.simulate(Scenario(precip_scale=0.5, months=3))
    print(twin.status()["text"])
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hydrology.forecast import Forecaster, PersistenceForecaster, monthly_inputs
from hydrology.indices import DroughtIndices
from twins.errors import DataError, TwinsError
from twins.twin import TwinStore, UpdateRecord, format_status

__all__ = [
    "ALERT_MEANINGS",
    "ALERT_THRESHOLDS",
    "KIND",
    "DroughtTwin",
    "Region",
    "Scenario",
    "UpdateResult",
    "alert_categories",
    "load_forecaster",
]

log = logging.getLogger(__name__)

#: Twin kind (domain name) in ``twin.json``.
KIND = "hydrology"
#: Extra months kept in the history beyond what indices and forecaster need (room for
#: scenarios over the last months: their indices are recomputed with full windows).
HISTORY_MARGIN = 12
#: Category thresholds (strictly below): moderate, severe, extreme.
ALERT_THRESHOLDS: tuple[float, float, float] = (-1.0, -1.5, -2.0)
ALERT_MEANINGS = "none moderate severe extreme"
#: Hargreaves-Samani temperature offset [degC]: PET is proportional to (T + 17.8).
HARGREAVES_OFFSET_C = 17.8
#: PET sensitivity used when the history has no temperature [fraction per K].
DEFAULT_PET_SENSITIVITY = 0.04

#: Fewest months handed to one xclim transform (it infers the frequency from 3 steps).
MIN_TRANSFORM_MONTHS = 3

_HISTORY = "history.nc"
_INDICES = "indices.nc"
_INPUT_VARS = ("pr", "wb", "sm", "t2m")
_STATICS = ("lsm", "z")
# daily canonical variable each monthly input comes from
_SOURCE = {"pr": "tp", "wb": "pev", "sm": "swvl1", "t2m": "t2m"}


# --------------------------------------------------------------------------------------------
# Forecaster loading


def load_forecaster(path: str | os.PathLike[str] | None, loader: str | None = None) -> Forecaster:
    """Load a forecaster from a model file, or persistence when there is none.

    Args:
        path: Model file (e.g. a trained network saved by ``ModelForecaster.save``), or None.
        loader: ``"module:Class.method"`` to call with the path; default
            ``"hydrology.model_forecaster:ModelForecaster.load"``.

    Returns:
        The forecaster (``PersistenceForecaster()`` for SPI-3 when ``path`` is None).

    Raises:
        TwinsError: The loader cannot be imported or fails on the file.
    """
    if path is None:
        return PersistenceForecaster()
    spec = loader or "hydrology.model_forecaster:ModelForecaster.load"
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise TwinsError(
            f"cannot load forecaster {path}: loader {spec!r} is unavailable ({exc})",
            hint="install the package that provides it",
        ) from None
    return obj(Path(path))


def _forecaster_spec(forecaster: Forecaster) -> dict[str, Any]:
    return {
        "class": f"{type(forecaster).__module__}:{type(forecaster).__qualname__}",
        "targets": list(forecaster.targets),
        "leads": list(forecaster.leads),
        "history_months": int(forecaster.history_months),
    }


# --------------------------------------------------------------------------------------------
# Alerts


def alert_categories(values: np.ndarray) -> np.ndarray:
    """Drought category of standardised-index values.

    Args:
        values: Index values (any shape, dimensionless); NaN where there is no data.

    Returns:
        int8 array of the same shape: 0 none (>= -1), 1 moderate (< -1), 2 severe (< -1.5),
        3 extreme (< -2), -1 where ``values`` is NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    cat = np.zeros(v.shape, dtype=np.int8)
    for threshold in ALERT_THRESHOLDS:
        cat += (np.nan_to_num(v, nan=np.inf) < threshold).astype(np.int8)
    cat[~np.isfinite(v)] = -1
    return cat


def _alerts_dataset(fc: xr.Dataset, issue: str, model_ref: str | None) -> xr.Dataset:
    """CF alert dataset: forecast values and categories per target, dims (lead, lat, lon)."""
    out = xr.Dataset(coords={k: fc.coords[k] for k in fc.coords})
    for name in fc.data_vars:
        values = fc[name].astype(np.float32)
        values.attrs = {
            "long_name": f"forecast of {name}",
            "units": "1",
            "_FillValue": np.float32(np.nan),
        }
        out[name] = values
        cat = xr.DataArray(alert_categories(fc[name].values), dims=fc[name].dims)
        cat.attrs = {
            "long_name": f"drought alert category of {name}",
            "standard_name": "status_flag",
            "flag_values": np.array([0, 1, 2, 3], dtype=np.int8),
            "flag_meanings": ALERT_MEANINGS,
            "thresholds": np.array(ALERT_THRESHOLDS, dtype=np.float64),
            "threshold_rule": "moderate < -1, severe < -1.5, extreme < -2 (strictly below)",
            "_FillValue": np.int8(-1),
        }
        out[f"category_{name}"] = cat
    out["lat"].attrs.update(standard_name="latitude", units="degrees_north", axis="Y")
    out["lon"].attrs.update(standard_name="longitude", units="degrees_east", axis="X")
    out["lead"].attrs.update(long_name="forecast lead time", units="months")
    out["valid_time"].attrs.update(long_name="month the forecast is valid for")
    out.attrs = {
        "Conventions": "CF-1.10",
        "title": f"drought alerts issued {issue}",
        "source": "hydrology.twin",
        "issue_month": issue,
        "model_ref": model_ref or "",
        "thresholds": "moderate < -1, severe < -1.5, extreme < -2",
    }
    return out


def _alert_counts(alerts: xr.Dataset) -> dict[str, dict[str, dict[str, int]]]:
    """Cells per category, per target and lead: ``{target: {lead: {category: n}}}``."""
    names = ALERT_MEANINGS.split()
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for var in alerts.data_vars:
        if not str(var).startswith("category_"):
            continue
        target = str(var)[len("category_") :]
        counts[target] = {}
        for i, lead in enumerate(alerts["lead"].values):
            cat = alerts[var].values[i]
            counts[target][str(int(lead))] = {
                n: int(np.sum(cat == k)) for k, n in enumerate(names)
            }
    return counts


# --------------------------------------------------------------------------------------------
# Data handling


def _month(t: Any) -> str:
    return pd.Timestamp(t).strftime("%Y-%m")


def _next_month(month: str) -> str:
    return (pd.Timestamp(month + "-01") + pd.DateOffset(months=1)).strftime("%Y-%m")


def _load(
    data: xr.Dataset | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> tuple[xr.Dataset, str]:
    """Open ``data`` (a dataset or NetCDF paths) as a loaded canonical dataset + its label."""
    from hydrology.io import normalise, open_grids

    if isinstance(data, xr.Dataset):
        return normalise(data, "<dataset>").load(), "<dataset>"
    paths = [data] if isinstance(data, str | os.PathLike) else list(data)
    if not paths:
        raise DataError("no new-data files given")
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} ... {paths[-1]}"
    return open_grids(paths, chunks=None).load(), label


def _check_whole_months(ds: xr.Dataset, source: str) -> list[str]:
    """Months of ``ds``; raise unless its time axis covers whole calendar months."""
    if "time" not in ds.dims or ds.sizes["time"] == 0:
        raise DataError(f"{source}: no time steps (variable 'time')")
    times = pd.DatetimeIndex(ds.indexes["time"])
    months = sorted({_month(t) for t in times})
    first = pd.Timestamp(months[0] + "-01")
    end = pd.Timestamp(months[-1] + "-01") + pd.DateOffset(months=1)
    if times.size < 2:
        raise DataError(
            f"{source}: a single time step {times[0]} (variable 'time'); the twin ingests daily "
            "or sub-daily data",
            hint="give the daily fields of the new months",
        )
    step = times[1] - times[0]
    if step > pd.Timedelta(days=1):
        raise DataError(
            f"{source}: time steps of {step} (variable 'time'); the twin ingests daily or "
            "sub-daily data",
            hint="give the daily fields of the new months",
        )
    if times[0] != first or times[-1] + step != end:
        raise DataError(
            f"{source}: data from {times[0]} to {times[-1]} do not cover whole months "
            f"(variable 'time', months {months[0]}..{months[-1]})",
            hint="give every day of each new month",
        )
    return months


def _to_index_input(monthly: xr.Dataset) -> xr.Dataset:
    """Monthly inputs -> the canonical variables DroughtIndices reads, as rates.

    ``tp`` = ``pr`` and ``pev`` = ``wb - pr`` in mm/d (fluxes: DroughtIndices takes their
    monthly mean, the identity on monthly data, and P - PET = ``tp + pev`` = ``wb``), ``swvl1``
    = ``sm``.
    """
    out = {}
    if "pr" in monthly:
        out["tp"] = monthly["pr"].assign_attrs(units="mm/d")
        if "wb" in monthly:
            out["pev"] = (monthly["wb"] - monthly["pr"]).assign_attrs(units="mm/d")
    if "sm" in monthly:
        out["swvl1"] = monthly["sm"].assign_attrs(units="m3 m-3")
    return xr.Dataset(out)


def _transform_tail(indices: DroughtIndices, monthly: xr.Dataset, n_tail: int) -> xr.Dataset:
    """Indices of the last ``n_tail`` months of ``monthly`` with the stored parameters.

    The earlier months of ``monthly`` fill the accumulation windows. At least
    ``MIN_TRANSFORM_MONTHS`` months are transformed (xclim infers the frequency of its input,
    which needs three time steps) and the extra ones dropped: with fixed parameters each
    month's value does not depend on which months are transformed together.

    Args:
        indices: Fitted indices.
        monthly: Monthly inputs (``pr``, ``wb``, ``sm``), dims ``(time, lat, lon)``.
        n_tail: Number of final months wanted.

    Returns:
        Indices for the last ``n_tail`` months, dims ``(time, lat, lon)``.
    """
    inputs = _to_index_input(monthly)
    n = inputs.sizes["time"]
    start = max(0, n - max(n_tail, MIN_TRANSFORM_MONTHS))
    out = indices.transform(inputs.isel(time=slice(start, None)), history=inputs)
    return out.isel(time=slice(-n_tail, None))


def _content_key(monthly: xr.Dataset, months: list[str]) -> str:
    h = hashlib.sha256()
    for name in sorted(str(v) for v in monthly.data_vars):
        arr = np.ascontiguousarray(monthly[name].values, dtype=np.float64)
        h.update(name.encode())
        h.update(arr.tobytes())
    return f"hydrology:{months[0]}..{months[-1]}:sha256:{h.hexdigest()[:32]}"


def _write_nc(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` as NetCDF-4, zlib level 1, deterministic (no timestamps in attributes)."""
    enc: dict[str, dict[str, Any]] = {}
    for name, da in ds.data_vars.items():
        if da.ndim:
            enc[str(name)] = {"zlib": True, "complevel": 1}
    for name in ds.coords:
        if ds[name].dtype.kind == "f" and name in ds.dims:
            enc[str(name)] = {"_FillValue": None}
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=enc)


# --------------------------------------------------------------------------------------------
# Scenarios


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
        region: Box where the scenario applies; None = the whole grid.
        months: Apply to the last ``months`` months of the history (None: see start/end).
        start: First month ``"YYYY-MM"`` of the period (with ``end``), instead of ``months``.
        end: Last month ``"YYYY-MM"`` of the period.
    """

    model_config = ConfigDict(extra="forbid")

    precip_scale: float = Field(1.0, ge=0)
    temp_shift: float = 0.0
    region: Region | None = None
    months: int | None = Field(None, ge=1)
    start: str | None = None
    end: str | None = None

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


# --------------------------------------------------------------------------------------------
# Twin


@dataclass
class UpdateResult:
    """Outcome of :meth:`DroughtTwin.update`.

    Attributes:
        noop: True when these months were already ingested (nothing written).
        version: The twin version holding the update.
        months: Months ingested, ``"YYYY-MM"``.
        cursor: Cursor after the update.
        issue: Issue month of the forecast.
        alerts_file: Path of the alert NetCDF.
        alerts: Cells per category per target and lead.
        record: The committed store record.
    """

    noop: bool
    version: int
    months: list[str]
    cursor: str | None
    issue: str
    alerts_file: Path
    alerts: dict[str, Any] = field(default_factory=dict)
    record: UpdateRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the record)."""
        return {
            "noop": self.noop,
            "version": self.version,
            "months": self.months,
            "cursor": self.cursor,
            "issue": self.issue,
            "alerts_file": str(self.alerts_file),
            "alerts": self.alerts,
        }


class DroughtTwin:
    """Python API of the drought twin (see the module docstring).

    Args:
        store: The opened twin store.
        forecaster: Use this forecaster instead of loading the stored one.
    """

    def __init__(self, store: TwinStore, forecaster: Forecaster | None = None) -> None:
        self.store = store
        self._forecaster = forecaster
        self._indices: DroughtIndices | None = None

    @property
    def path(self) -> Path:
        """The twin directory."""
        return self.store.path

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def open(
        cls, twin_dir: str | os.PathLike[str], forecaster: Forecaster | None = None
    ) -> DroughtTwin:
        """Open an existing drought twin.

        Args:
            twin_dir: The twin directory.
            forecaster: Override the stored forecaster (e.g. an in-memory object).

        Returns:
            The twin.
        """
        return cls(TwinStore.open(twin_dir, kind=KIND), forecaster)

    @classmethod
    def init(
        cls,
        twin_dir: str | os.PathLike[str],
        data: xr.Dataset | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        forecaster: Forecaster,
        indices: DroughtIndices,
        forecaster_file: str | os.PathLike[str] | None = None,
        model_ref: str | None = None,
        forecaster_loader: str | None = None,
    ) -> DroughtTwin:
        """Create a twin from a daily record, fitted indices and a forecaster.

        Args:
            twin_dir: New twin directory (must not hold a twin).
            data: Daily canonical dataset (``tp`` and whatever the indices need; ``pev``,
                ``swvl1``, ``t2m``, statics when present), dims ``(time, lat, lon)``, or NetCDF
                paths. Its last month becomes the cursor; it must cover whole months.
            forecaster: The forecaster (any :class:`Forecaster`).
            indices: Fitted :class:`DroughtIndices` (their parameters are stored).
            forecaster_file: The trained model file behind ``forecaster``; copied into the
                twin so that later processes (CLI, cron) load it with :func:`load_forecaster`.
            model_ref: Model reference to record (e.g. ``"models:/drought/3"``); default: the
                file name and its SHA-256, or ``"persistence"``.
            forecaster_loader: ``"module:Class.method"`` that loads ``forecaster_file``.

        Returns:
            The twin, at version 0, with an initial forecast and alerts from the last month.
        """
        if not indices.params:
            raise DataError("DroughtTwin.init needs fitted indices", hint="call indices.fit()")
        ds, source = _load(data)
        months = _check_whole_months(ds, source)
        monthly = monthly_inputs(ds).load()
        n_keep = max(indices.history_months, int(forecaster.history_months)) + HISTORY_MARGIN
        if monthly.sizes["time"] < n_keep:
            raise DataError(
                f"{source}: {monthly.sizes['time']} months; the twin needs at least {n_keep}"
            )
        idx_ds = indices.transform(_to_index_input(monthly))
        history = _history_dataset(monthly, idx_ds, n_keep)
        issue = months[-1]
        fc = forecaster.forecast(history)
        file_name: str | None = None
        if forecaster_file is not None:
            src = Path(forecaster_file)
            file_name = "forecaster" + "".join(src.suffixes)
            digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
            model_ref = model_ref or f"{src.name}@sha256:{digest}"
            loader = forecaster_loader or (
                f"{type(forecaster).__module__}:{type(forecaster).__qualname__}.load"
                if hasattr(type(forecaster), "load")
                else None
            )
        else:
            loader = None
            if not isinstance(forecaster, PersistenceForecaster):
                log.warning(
                    "forecaster %s has no model file: reopen the twin with "
                    "DroughtTwin.open(dir, forecaster=...) (the CLI cannot load it)",
                    type(forecaster).__name__,
                )
            model_ref = model_ref or (
                "persistence"
                if isinstance(forecaster, PersistenceForecaster)
                else type(forecaster).__qualname__
            )
        alerts = _alerts_dataset(fc, issue, model_ref)
        counts = _alert_counts(alerts)
        alerts_name = f"alerts_{issue}.nc"

        def products(d: Path) -> None:
            indices.save(d / _INDICES)
            _write_nc(history, d / _HISTORY)
            _write_nc(alerts, d / alerts_name)
            if forecaster_file is not None and file_name is not None:
                shutil.copyfile(forecaster_file, d / file_name)

        extra = {
            "forecaster": {
                **_forecaster_spec(forecaster),
                "file": file_name,
                "loader": loader,
            },
            "variables": [_SOURCE[v] for v in _INPUT_VARS if v in monthly],
            "history_months": n_keep,
            "indices": indices.names,
            "issue": issue,
            "alerts_file": alerts_name,
            "alerts": counts,
        }
        TwinStore.init(
            twin_dir,
            KIND,
            model_ref=model_ref,
            cursor=issue,
            extra=extra,
            products=products,
            summary={"months": [months[0], months[-1]], "issue": issue, "alerts": counts},
        )
        log.info("drought twin %s: initialised at %s (model %s)", twin_dir, issue, model_ref)
        return cls(TwinStore.open(twin_dir, kind=KIND), forecaster)

    # -- loading --------------------------------------------------------------------------

    @property
    def indices(self) -> DroughtIndices:
        """The stored index parameters."""
        if self._indices is None:
            self._indices = DroughtIndices.load(self.store.product_path(_INDICES))
        return self._indices

    @property
    def forecaster(self) -> Forecaster:
        """The forecaster (loaded from the twin on first use unless given at open)."""
        if self._forecaster is None:
            spec = self.store.state.extra.get("forecaster", {})
            if spec.get("file"):
                path = self.store.product_path(spec["file"])
                self._forecaster = load_forecaster(path, spec.get("loader"))
            elif spec.get("class", "").endswith(":PersistenceForecaster"):
                self._forecaster = PersistenceForecaster(
                    tuple(spec["targets"]), tuple(spec["leads"])
                )
            else:
                raise TwinsError(
                    f"twin {self.path}: its forecaster {spec.get('class')} has no stored model "
                    "file",
                    hint="open it with DroughtTwin.open(dir, forecaster=...)",
                )
        return self._forecaster

    def history(self) -> xr.Dataset:
        """The stored monthly history (inputs, indices, statics), loaded."""
        with xr.open_dataset(self.store.product_path(_HISTORY), engine="netcdf4") as h:
            return h.load()

    def alerts(self) -> xr.Dataset:
        """The latest alert dataset (forecast values and categories)."""
        name = self.store.state.extra["alerts_file"]
        with xr.open_dataset(self.store.product_path(name), engine="netcdf4") as a:
            return a.load()

    # -- update ---------------------------------------------------------------------------

    def _prepare(
        self, data: xr.Dataset | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
    ) -> tuple[xr.Dataset, list[str], str, str]:
        """Load and validate new data; return monthly inputs, months, key and source label."""
        from hydrology.io import validate

        ds, source = _load(data)
        extra = self.store.state.extra
        required = list(extra.get("variables", ["tp"]))
        validate(ds, source, required, check_values=True)
        months = _check_whole_months(ds, source)
        hist = self.history()
        for axis in ("lat", "lon"):
            a, b = np.asarray(hist[axis].values), np.asarray(ds[axis].values)
            if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
                raise DataError(
                    f"{source}: grid does not match the twin (variable '{axis}': {b.size} "
                    f"values {b.min():g}..{b.max():g}, twin has {a.size} values "
                    f"{a.min():g}..{a.max():g})",
                    hint="regrid the new data to the twin's grid",
                )
        monthly = monthly_inputs(ds[required]).load()
        monthly = monthly.drop_vars([s for s in _STATICS if s in monthly])
        land = _land(hist)
        for name in monthly.data_vars:
            per_month = monthly[name].where(land)
            for i, month in enumerate(months):
                if not bool(np.isfinite(per_month.values[i]).any()):
                    raise DataError(
                        f"{source}: variable '{_SOURCE.get(str(name), name)}' is entirely NaN "
                        f"over land in {month}",
                        hint="check the download of that month",
                    )
        return monthly, months, _content_key(monthly, months), source

    def update(
        self,
        new_data: xr.Dataset | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        wait: bool | float = False,
    ) -> UpdateResult:
        """Ingest one or more new months and issue a new forecast with alerts.

        Args:
            new_data: Daily canonical dataset or NetCDF file(s) of whole months directly after
                the cursor, on the twin's grid, with the variables the twin was built from.
            wait: False: refuse at once if another update holds the lock; True: wait for it;
                a number: wait up to that many seconds.

        Returns:
            The result; ``noop=True`` when these months (same content) were already ingested.

        Raises:
            DataError: Bad new data (message names the file and variable).
            TwinsError: The months do not follow the cursor.
            TwinLockedError: Another update holds the lock.
        """
        monthly, months, key, source = self._prepare(new_data)
        with self.store.transaction(key, wait=wait) as txn:
            if txn.noop:
                assert txn.record is not None
                log.info("twin %s: months %s already ingested (no-op)", self.path, months)
                return self._result(txn.record, True)
            cursor = txn.state.cursor
            expected = _next_month(cursor) if cursor else months[0]
            if months[0] != expected:
                what = "already ingested" if months[0] <= (cursor or "") else "gap"
                raise DataError(
                    f"{source}: first month {months[0]} does not follow the twin's cursor "
                    f"{cursor} ({what}; expected {expected}) (variable 'time')",
                    hint="give the months after the cursor, in order, without gaps",
                )
            history = self.history()
            new_hist = _append(history, monthly, self.indices, txn.state.extra)
            fc = self.forecaster.forecast(new_hist)
            issue = months[-1]
            alerts = _alerts_dataset(fc, issue, txn.state.model_ref)
            counts = _alert_counts(alerts)
            alerts_name = f"alerts_{issue}.nc"
            _write_nc(new_hist, txn.products_dir / _HISTORY)
            _write_nc(alerts, txn.products_dir / alerts_name)
            extra = dict(txn.state.extra)
            extra.update(issue=issue, alerts_file=alerts_name, alerts=counts)
            txn.update_state(cursor=issue, extra=extra)
            txn.summary.update(months=months, issue=issue, alerts=counts, source=source)
        assert txn.record is not None
        log.info("twin %s: ingested %s, forecast issued %s", self.path, months, issue)
        return self._result(txn.record, False)

    def _result(self, record: UpdateRecord, noop: bool) -> UpdateResult:
        issue = str(record.summary.get("issue"))
        return UpdateResult(
            noop=noop,
            version=record.version,
            months=list(record.summary.get("months", [])),
            cursor=record.cursor_after,
            issue=issue,
            alerts_file=self.store.version_dir(record.version) / "products" / f"alerts_{issue}.nc",
            alerts=dict(record.summary.get("alerts", {})),
            record=record,
        )

    # -- simulate -------------------------------------------------------------------------

    def simulate(self, scenario: Scenario | dict[str, Any]) -> xr.Dataset:
        """Forecast under a what-if scenario; the twin directory is not changed.

        Args:
            scenario: The scenario (or a dict validated as one).

        Returns:
            Dataset with, per forecast target, ``<target>`` = scenario - baseline forecast,
            and ``baseline_<target>`` / ``scenario_<target>``, dims ``(lead, lat, lon)``
            (index units), plus ``delta_<index>`` = scenario - baseline of every index in the
            issue month, dims ``(lat, lon)``; the scenario as JSON in ``attrs["scenario"]``.
        """
        sc = scenario if isinstance(scenario, Scenario) else Scenario.model_validate(scenario)
        history = self.history()
        modified, first = _apply_scenario(history, sc)
        indices = self.indices
        names = [n for n in indices.names if n in history]
        if first is not None:
            new_idx = _transform_tail(indices, modified, modified.sizes["time"] - first)
            for name in names:
                modified[name] = xr.concat(
                    [history[name].isel(time=slice(None, first)), new_idx[name]], dim="time"
                ).assign_attrs(history[name].attrs)
        forecaster = self.forecaster
        base = forecaster.forecast(history)
        scen = forecaster.forecast(modified)
        out = xr.Dataset(coords={k: base.coords[k] for k in base.coords})
        for target in base.data_vars:
            out[target] = (scen[target] - base[target]).assign_attrs(
                long_name=f"scenario - baseline forecast of {target}", units="1"
            )
            out[f"baseline_{target}"] = base[target]
            out[f"scenario_{target}"] = scen[target]
        for name in names:
            out[f"delta_{name}"] = (
                modified[name].isel(time=-1) - history[name].isel(time=-1)
            ).assign_attrs(long_name=f"scenario - baseline {name} in the issue month", units="1")
        out.attrs = {
            "scenario": sc.model_dump_json(),
            "issue_month": _month(history["time"].values[-1]),
            "modified_months": ""
            if first is None
            else f"{_month(history.time.values[first])}..{_month(history.time.values[-1])}",
        }
        return out

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Cursor, model, version and the last alerts.

        Returns:
            :meth:`TwinStore.status` plus ``issue``, ``alerts`` (``{target: {lead: {category:
            cells}}}``) and ``text`` (the printable form).
        """
        st = self.store.status()
        extra = st.get("extra", {})
        st["issue"] = extra.get("issue")
        st["alerts"] = extra.get("alerts", {})
        lines = [format_status(st), f"issued      {st['issue']}", "alerts (cells per category):"]
        for target, per_lead in st["alerts"].items():
            for lead, cats in per_lead.items():
                text = "  ".join(f"{k}={v}" for k, v in cats.items())
                lines.append(f"  {target} lead {lead}: {text}")
        st["text"] = "\n".join(lines)
        return st


# --------------------------------------------------------------------------------------------
# History helpers


def _land(history: xr.Dataset) -> xr.DataArray:
    if "lsm" in history:
        return history["lsm"] > 0.5
    return np.isfinite(history["pr"]).any("time")


def _history_dataset(monthly: xr.Dataset, idx: xr.Dataset, n_keep: int) -> xr.Dataset:
    """Last ``n_keep`` months of inputs + indices, with statics."""
    dyn = [v for v in _INPUT_VARS if v in monthly]
    hist = xr.merge([monthly[dyn], idx], combine_attrs="drop").isel(time=slice(-n_keep, None))
    for v in dyn + list(idx.data_vars):
        src = monthly if v in monthly else idx
        hist[v] = hist[v].astype(np.float64).assign_attrs(src[v].attrs)
    for s in _STATICS:
        if s in monthly:
            hist[s] = monthly[s].astype(np.float32)
    hist.attrs = {"Conventions": "CF-1.10", "source": "hydrology.twin monthly history"}
    if "clipping" in idx.attrs:
        hist.attrs["index_clipping"] = idx.attrs["clipping"]
    return hist


def _append(
    history: xr.Dataset, monthly: xr.Dataset, indices: DroughtIndices, extra: dict[str, Any]
) -> xr.Dataset:
    """History + new monthly inputs, indices transformed with the stored parameters."""
    dyn = [v for v in _INPUT_VARS if v in history]
    missing = [v for v in dyn if v not in monthly]
    if missing:
        raise DataError(f"new data lack {[_SOURCE[v] for v in missing]}")
    new = monthly[dyn]
    combined = xr.concat([history[dyn], new], dim="time")
    idx = _transform_tail(indices, combined, new.sizes["time"])
    merged = xr.merge([new, idx], combine_attrs="drop")
    statics = [s for s in _STATICS if s in history]
    body = history.drop_vars(statics)
    both = xr.concat([body, merged[list(body.data_vars)]], dim="time", combine_attrs="override")
    n_keep = int(extra.get("history_months", both.sizes["time"]))
    both = both.isel(time=slice(-n_keep, None))
    for v in both.data_vars:
        both[v] = both[v].astype(np.float64).assign_attrs(history[v].attrs)
    for s in statics:
        both[s] = history[s]
    both.attrs = dict(history.attrs)
    return both


def _apply_scenario(history: xr.Dataset, sc: Scenario) -> tuple[xr.Dataset, int | None]:
    """A modified copy of the history and the position of its first modified month."""
    out = history.copy(deep=True)
    months = [_month(t) for t in history["time"].values]
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
    first = int(np.argmax(sel))
    return out, first
