"""Monthly sample cube of the drought forecaster (its torch datasets: :mod:`hydrology.samples`).

From a canonical daily or monthly dataset holding precipitation ``tp`` and whatever else
the record gives (``pev``, ``swvl1``, ``t2m``, statics ``lsm``, ``z``; a gauge grid such as
GPCC gives precipitation alone), :func:`build_cube` makes, for the served cells
(:func:`hydrology.features.input_cells`: land, and inputs observed in at least half the
training months):

* **dynamic inputs** ``(cell, month, feature)`` (:func:`hydrology.features.dynamic_features`):
  per-calendar-month z-scores of the monthly inputs present among ``pr, wb, sm, t2m``
  against the *training period*, the current target indices, optional regional means,
  observation masks when the record has gaps, and sin/cos of the calendar month; missing
  values are 0;
* **static inputs** ``(cell, feature)``: orography ``z`` standardised over the training
  cells and ``lsm``, each where given (none for a precipitation-only record);
* **targets** ``(cell, month, output)``: the index at ``issue + lead``, outputs ordered
  target-major (``spi_3@1, spi_3@2, spi_3@3, ssmi_1@1, ...``); NaN where the record ends,
  the index is undefined or its window holds a gap; indices are clipped to +/-3.09
  (:data:`hydrology.indices.CLIPPING_POLICY`, recorded in :attr:`DroughtCube.meta`);
* **baseline** ``(cell, month, output)``: the overlap-aware analogue (ESP) forecast issued
  at that month for SPI targets (:func:`hydrology.baselines.overlap_analogue`, analogue
  years = training years, leave-one-out), climatology (0) for the other indices and where
  ESP is undefined; the hybrid model takes it as input and learns the residual.

The drought indices are fitted on the training period only (from the monthly inputs, as
the twin computes them), and so are the scaler statistics (:class:`Scaler`): nothing from
the validation or test periods leaks into the inputs. Samples are ``(cell, issue month)``
pairs (:mod:`hydrology.samples` indexes them lazily, without materialised windows).
Samples whose targets are all NaN are dropped; partially NaN targets are kept and masked
in the loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from hydrology.aggregate import monthly_mean
from hydrology.baselines import overlap_analogue
from hydrology.features import (
    INPUT_VARS,
    MIN_VALID_SHARE,
    Z_CLIP,
    Scaler,
    dynamic_features,
    dynamic_names,
    has_gaps,
    input_cells,
    static_features,
    static_names,
    time_by_cell,
)
from hydrology.forecast import index_inputs, monthly_inputs
from hydrology.indices import CLIP, CLIPPING_POLICY, DroughtIndices, IndexSpec
from hydrology.pet import PetMethod
from hydrology.targets import check_targets
from twins.atomic import atomic_write
from twins.errors import DataError

log = logging.getLogger(__name__)

#: Default time-ordered splits per synthetic preset (inclusive month ranges). The demo
#: preset places one drought event in each of them (see ``hydrology.synthetic.PRESETS``);
#: in the tiny preset (2000-2007) events fall in 2000-2001 and 2004-2007.
DEFAULT_SPLITS: dict[str, dict[str, tuple[str, str]]] = {
    "demo": {
        "train": ("1991-01", "2010-12"),
        "val": ("2011-01", "2014-12"),
        "test": ("2015-01", "2020-12"),
    },
    "tiny": {
        "train": ("2000-01", "2004-12"),
        "val": ("2005-01", "2005-12"),
        "test": ("2006-01", "2007-12"),
    },
}

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def _month(s: str) -> pd.Timestamp:
    return pd.Timestamp(s).to_period("M").to_timestamp()


def _month_end(s: str) -> pd.Timestamp:
    return _month(s)


def check_splits(
    splits: dict[str, tuple[str, str]],
) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """Validate time-ordered, non-overlapping splits.

    Args:
        splits: ``{"train"|"val"|"test": (first month, last month)}``, inclusive.

    Returns:
        The same with month-start timestamps.

    Raises:
        DataError: A split is missing, empty, or out of order.
    """
    out = {}
    for name in SPLIT_NAMES:
        if name not in splits:
            raise DataError(f"split {name!r} missing", hint="give train, val and test periods")
        a, b = _month(splits[name][0]), _month_end(splits[name][1])
        if b < a:
            raise DataError(f"split {name!r} ends ({b:%Y-%m}) before it starts ({a:%Y-%m})")
        out[name] = (a, b)
    if not out["train"][1] < out["val"][0] <= out["val"][1] < out["test"][0]:
        raise DataError(
            "splits must be time-ordered and disjoint: train < val < test",
            hint=f"got { ({k: (f'{a:%Y-%m}', f'{b:%Y-%m}') for k, (a, b) in out.items()}) }",
        )
    return out


def output_names(targets: Sequence[str], leads: Sequence[int]) -> list[str]:
    """Output names, target-major: ``["spi_3@1", "spi_3@2", ..., "ssmi_1@1", ...]``."""
    return [f"{t}@{k}" for t in targets for k in leads]


@dataclass
class DroughtCube:
    """Everything the datasets, the evaluation and the forecaster need, per land cell.

    Attributes:
        times: Month starts, ``(time,)``.
        lat: Latitudes, ``(lat,)``.
        lon: Longitudes, ``(lon,)``.
        cells: Flat land-cell indices into ``lat * lon``, ``(cell,)``.
        dynamic: ``(cell, time, F)`` float32 inputs.
        static: ``(cell, S)`` float32 inputs.
        baseline: ``(cell, time, output)`` float32 ESP / climatology forecast issued at t.
        target: ``(cell, time, output)`` float32 index at ``t + lead`` (NaN where unknown).
        obs: ``(cell, time, len(targets))`` float32 observed (clipped) indices at t.
        pr: ``(cell, time)`` float32 monthly precipitation rate (mm/d), for ESP.
        scaler: Training-period statistics.
        spi_params: Per SPI target: gamma ``(12, 3, cell)`` and ``p0`` ``(12, cell)``.
        drought_share: Share of land cells in drought per month, ``(time,)``.
        meta: Targets, leads, splits, features, clipping policy.
    """

    times: pd.DatetimeIndex
    lat: np.ndarray
    lon: np.ndarray
    cells: np.ndarray
    dynamic: np.ndarray
    static: np.ndarray
    baseline: np.ndarray
    target: np.ndarray
    obs: np.ndarray
    pr: np.ndarray
    scaler: Scaler
    spi_params: dict[str, dict[str, np.ndarray]]
    drought_share: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        """Target index names."""
        return list(self.meta["targets"])

    @property
    def leads(self) -> list[int]:
        """Leads in months."""
        return [int(k) for k in self.meta["leads"]]

    @property
    def outputs(self) -> list[str]:
        """Output names (target-major)."""
        return output_names(self.targets, self.leads)

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape ``(lat, lon)``."""
        return self.lat.size, self.lon.size

    def split_range(self, name: str) -> tuple[int, int]:
        """Time-index range ``[a, b]`` (inclusive) of a split's months."""
        a, b = (pd.Timestamp(x) for x in self.meta["splits"][name])
        ia = int(np.searchsorted(self.times.values, np.datetime64(a)))
        ib = int(np.searchsorted(self.times.values, np.datetime64(b), side="right")) - 1
        return ia, ib

    def issue_range(self, name: str, seq_len: int) -> tuple[int, int]:
        """Issue months ``[a, b]`` (inclusive) of a split's samples.

        A sample belongs to a split when all its target months lie in the split
        (``t + 1 >= start`` and ``t + max(lead) <= end``) and its input window fits the
        record (``t >= seq_len - 1``). No training target lies in the validation or test
        periods.
        """
        a, b = self.split_range(name)
        return max(a - 1, seq_len - 1), b - max(self.leads)

    def grid(self, values: np.ndarray) -> np.ndarray:
        """Scatter ``(..., cell)`` onto ``(..., lat, lon)`` with NaN over sea."""
        out = np.full((*values.shape[:-1], self.lat.size * self.lon.size), np.nan, np.float32)
        out[..., self.cells] = values
        return out.reshape(*values.shape[:-1], self.lat.size, self.lon.size)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the cube to one ``.npz`` file atomically."""
        path = Path(path)
        arrays: dict[str, Any] = {
            "times": self.times.values.astype("datetime64[ns]").astype(np.int64),
            "lat": self.lat,
            "lon": self.lon,
            "cells": self.cells,
            "dynamic": self.dynamic,
            "static": self.static,
            "baseline": self.baseline,
            "target": self.target,
            "obs": self.obs,
            "pr": self.pr,
            "drought_share": self.drought_share,
            "scaler_mean": self.scaler.mean,
            "scaler_std": self.scaler.std,
            "meta": np.array(
                json.dumps(
                    self.meta
                    | {"scaler": [self.scaler.z_mean, self.scaler.z_std, self.scaler.clip]}
                )
            ),
        }
        for t, p in self.spi_params.items():
            arrays[f"spi_{t}_gamma"] = p["gamma"]
            arrays[f"spi_{t}_p0"] = p["p0"]

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a name
                np.savez(fh, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> DroughtCube:
        """Read a cube written by :meth:`save`."""
        with np.load(Path(path)) as f:
            meta = json.loads(str(f["meta"]))
            zm, zs, clip = meta.pop("scaler")
            spi = {
                t: {"gamma": f[f"spi_{t}_gamma"], "p0": f[f"spi_{t}_p0"]}
                for t in meta["targets"]
                if f"spi_{t}_gamma" in f
            }
            return cls(
                times=pd.DatetimeIndex(f["times"].astype("datetime64[ns]")),
                lat=f["lat"],
                lon=f["lon"],
                cells=f["cells"],
                dynamic=f["dynamic"],
                static=f["static"],
                baseline=f["baseline"],
                target=f["target"],
                obs=f["obs"],
                pr=f["pr"],
                drought_share=f["drought_share"],
                scaler=Scaler(
                    f["scaler_mean"],
                    f["scaler_std"],
                    zm,
                    zs,
                    clip,
                    tuple(meta.get("inputs", INPUT_VARS)),
                ),
                spi_params=spi,
                meta=meta,
            )


def _spi_param_arrays(params: xr.DataArray, cells: np.ndarray) -> dict[str, np.ndarray]:
    """Gamma ``(12, 3, cell)`` and ``p0`` ``(12, cell)`` from fitted SPI parameters."""
    par = params.transpose("month", "dparams", "lat", "lon")
    g = par.sel(dparams=["a", "loc", "scale"]).values.reshape(12, 3, -1)[:, :, cells]
    nz = par["number_of_zeros"].values.reshape(12, -1)[:, cells].astype(float)
    nn_ = par["number_of_notnull"].values.reshape(12, -1)[:, cells].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p0 = np.where(nn_ > 0, nz / nn_, np.nan)
    return {"gamma": g.astype(np.float64), "p0": p0}


def _served(da: xr.DataArray, cells: np.ndarray) -> xr.DataArray:
    """``da`` with ``(lat, lon)`` stacked into ``cell`` and only the served ``cells`` kept."""
    flat = da.stack(cell=("lat", "lon"), create_index=False)
    return flat.isel(cell=cells)


def observed_indices(indices: xr.Dataset, targets: Sequence[str], cells: np.ndarray) -> np.ndarray:
    """The clipped observed indices of the served cells.

    Args:
        indices: Index dataset holding ``targets``, dims ``(time, lat, lon)``.
        targets: Index names.
        cells: Flat served-cell indices into ``lat * lon``, ``(cell,)``.

    Returns:
        ``(time, cell, target)`` float32, clipped to +/-:data:`~hydrology.indices.CLIP`.
    """
    obs = np.stack([time_by_cell(indices[t])[:, cells] for t in targets], axis=-1)
    return np.clip(obs, -CLIP, CLIP).astype(np.float32)


def forecast_targets(
    obs: np.ndarray,
    pr_cells: xr.DataArray,
    params: dict[str, xr.DataArray],
    cells: np.ndarray,
    targets: Sequence[str],
    leads: Sequence[int],
    train_years: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """Targets at every lead, the analogue (ESP) baseline and the SPI parameter arrays.

    Every value is per cell: a block of cells gives the same numbers as the whole grid.

    Args:
        obs: ``(time, cell, target)`` observed indices (:func:`observed_indices`).
        pr_cells: ``(time, cell)`` monthly precipitation rate of the served cells, mm/d.
        params: Fitted index parameters per target on the ``(lat, lon)`` grid
            (:attr:`hydrology.indices.DroughtIndices.params`).
        cells: Flat served-cell indices into that grid, ``(cell,)``.
        targets: Index names.
        leads: Leads in months.
        train_years: Analogue years ``(first, last)``.

    Returns:
        ``(target, baseline, spi_params)``: ``(time, cell, output)`` float32 index at
        ``t + lead`` (NaN past the record), the ESP forecast issued at ``t`` (climatology 0
        for non-SPI targets and where ESP is undefined), and per SPI target gamma
        ``(12, 3, cell)`` and ``p0`` ``(12, cell)``.
    """
    nt, n = obs.shape[:2]
    n_out = len(targets) * len(leads)
    target = np.full((nt, n, n_out), np.nan, np.float32)
    baseline = np.zeros((nt, n, n_out), np.float32)
    spi_params: dict[str, dict[str, np.ndarray]] = {}
    for i, t in enumerate(targets):
        s = IndexSpec.parse(t)
        if s.kind == "spi":
            spi_params[t] = _spi_param_arrays(params[t], cells)
        for j, k in enumerate(leads):
            o = i * len(leads) + j
            target[: nt - k, :, o] = obs[k:, :, i]
            if s.kind == "spi":
                esp = overlap_analogue(
                    pr_cells,
                    _served(params[t], cells),
                    window=s.window,
                    lead=k,
                    train_years=train_years,
                )
                # esp is on the verification axis: esp[T] issued at T - k.
                e = np.clip(esp.transpose("time", "cell").values, -CLIP, CLIP)
                baseline[: nt - k, :, o] = np.nan_to_num(e[k:], nan=0.0)
    return target, baseline, spi_params


def in_drought(
    drought_mask: xr.DataArray | None,
    indices: xr.Dataset,
    targets: Sequence[str],
    cells: np.ndarray,
) -> np.ndarray:
    """Which served cells are in drought each month, ``(time, cell)`` bool.

    Args:
        drought_mask: Monthly mean of the synthetic truth mask ``(time, lat, lon)``, or None.
        indices: Index dataset holding ``targets``.
        targets: Index names (SPI-3 decides when present, else the first target).
        cells: Flat served-cell indices, ``(cell,)``.

    Returns:
        ``drought_mask > 0.5`` where given, else index ``< -1.5``.
    """
    if drought_mask is not None:
        return time_by_cell(drought_mask)[:, cells] > 0.5
    spi3 = indices["spi_3"] if "spi_3" in indices else indices[targets[0]]
    return time_by_cell(spi3)[:, cells] < -1.5


def cube_meta(
    targets: Sequence[str],
    leads: Sequence[int],
    splits: dict[str, tuple[pd.Timestamp, pd.Timestamp]],
    inputs: Sequence[str],
    regional: Sequence[float],
    masks: bool,
    static: Sequence[str],
    pet: str | None,
    calibration: tuple[str, str],
    drought_cell_share: float,
    source: str,
) -> dict[str, Any]:
    """The cube's :attr:`DroughtCube.meta` (JSON-able).

    Args:
        targets: Index names.
        leads: Leads in months.
        splits: Checked splits (:func:`check_splits`).
        inputs: The scaled monthly inputs, in feature order.
        regional: Regional-mean kernel widths [cells].
        masks: Whether observation masks are features.
        static: Static feature names.
        pet: How the water balance's PET was obtained (None without ``wb``).
        calibration: ``(first day, last day)`` of the index calibration period.
        drought_cell_share: Share of cells that makes a drought month.
        source: The data's origin, for messages.
    """
    train = splits["train"]
    return {
        "targets": list(targets),
        "leads": [int(k) for k in leads],
        "splits": {k: [str(a.date()), str(b.date())] for k, (a, b) in splits.items()},
        "inputs": list(inputs),
        "dynamic_features": dynamic_names(inputs, targets, regional, masks),
        "regional_sigmas": [float(s) for s in regional],
        "input_masks": masks,
        "static_features": list(static),
        "pet": None if pet is None else str(pet),
        "clipping": {"indices": CLIPPING_POLICY, "index_clip": CLIP, "input_z_clip": Z_CLIP},
        "calibration_period": [calibration[0], calibration[1]],
        "train_years": [train[0].year, train[1].year],
        "baseline": "overlap-aware analogue (ESP) for SPI targets, climatology (0) otherwise",
        "drought_cell_share": drought_cell_share,
        "source": source,
    }


def check_record(
    ds: xr.Dataset, splits: dict[str, tuple[pd.Timestamp, pd.Timestamp]], source: str
) -> None:
    """Refuse splits outside the record's months.

    Args:
        ds: Canonical dataset with a ``time`` axis (its values only are read).
        splits: Checked splits (:func:`check_splits`).
        source: The file(s) ``ds`` came from, for the message.

    Raises:
        DataError: A split starts before the first month or ends after the last.
    """
    record = pd.DatetimeIndex(ds.time.values).to_period("M")
    first, last = record[0].to_timestamp(), record[-1].to_timestamp()
    for name, (a, b) in splits.items():
        if a < first or b > last:
            raise DataError(
                f"{source}: split {name!r} ({a:%Y-%m}..{b:%Y-%m}) is outside the record "
                f"({first:%Y-%m}..{last:%Y-%m})",
                hint="set task.params.splits to periods inside the data",
            )


def build_cube(
    ds: xr.Dataset,
    splits: dict[str, tuple[str, str]],
    targets: Sequence[str] = ("spi_3", "ssmi_1"),
    leads: Sequence[int] = (1, 2, 3),
    require_val_drought: bool = True,
    drought_cell_share: float = 0.05,
    regional: Sequence[float] = (),
    pet: PetMethod = "auto",
    input_masks: Literal["auto", "on", "off"] = "auto",
    source: str = "<dataset>",
) -> DroughtCube:
    """Build the monthly sample cube from a canonical daily or monthly dataset.

    Args:
        ds: Canonical dataset with ``tp`` and whatever else the record holds (``pev``,
            ``swvl1``, ``t2m``, ``mn2t``/``mx2t``, statics ``lsm``, ``z``), gaps as NaN; an
            optional ``drought_mask`` (synthetic truth) decides which months are droughts.
        splits: ``{"train"|"val"|"test": (first month, last month)}``; indices and the
            scaler are fitted on the training period only.
        targets: Index names (``spi_N``, ``spei_N``, ``ssmi_N``).
        leads: Lead times in months.
        require_val_drought: Raise when the validation period has no drought month.
        drought_cell_share: A month is a drought month when at least this share of land
            cells is in drought (``drought_mask`` monthly mean > 0.5, else SPI-3 < -1.5).
        regional: Kernel widths [cells] of regional-mean index inputs (see
            :func:`hydrology.features.dynamic_features`).
        pet: Where SPEI's PET comes from (:func:`hydrology.pet.pet_source`); given ``pev``
            is also a model input (``wb``), a derived PET only when a target needs it.
        input_masks: Observation-mask features: ``auto`` when an input misses months at a
            served cell, ``on``, ``off``.
        source: The file(s) ``ds`` came from, for messages.

    Returns:
        The :class:`DroughtCube`.

    Raises:
        ConfigError: A target whose variable ``ds`` lacks.
        DataError: Bad splits, splits outside the record, no land, or a drought-free
            validation period.
    """
    sp = check_splits(splits)
    check_targets(ds, targets, pet, source)
    specs = [IndexSpec.parse(t) for t in targets]
    check_record(ds, sp, source)
    ds = ds.load()
    spei = any(s.kind == "spei" for s in specs)
    monthly = monthly_inputs(ds, pet if spei else "pev").load()
    times = pd.DatetimeIndex(monthly.time.values)
    train = sp["train"]
    cells = input_cells(monthly, train)
    if cells.size == 0:
        raise DataError(
            f"{source}: no land cells (lsm > 0.5 where given, and inputs observed in at least "
            f"{MIN_VALID_SHARE:.0%} of the training months)"
        )
    masks = input_masks == "on" or (input_masks == "auto" and has_gaps(monthly, cells))
    cal_end = str((train[1] + pd.offsets.MonthEnd(0)).date())
    di = DroughtIndices(list(targets), str(train[0].date()), cal_end)
    indices = di.fit_transform(index_inputs(monthly))
    scaler = Scaler.fit(monthly, cells, train)
    dynamic = dynamic_features(monthly, indices, targets, cells, scaler, regional, masks)
    static = static_features(monthly, cells, scaler)

    obs = observed_indices(indices, targets, cells)
    train_years = (train[0].year, train[1].year)
    pr_cells = _served(monthly["pr"], cells)
    target, baseline, spi_params = forecast_targets(
        obs, pr_cells, di.params, cells, targets, leads, train_years
    )
    dm = monthly_mean(ds["drought_mask"].astype("float32")) if "drought_mask" in ds else None
    share = in_drought(dm, indices, targets, cells).mean(axis=1).astype(np.float32)
    meta = cube_meta(
        targets,
        leads,
        sp,
        scaler.variables,
        regional,
        masks,
        static_names(monthly),
        monthly["wb"].attrs.get("pet_method", "pev") if "wb" in monthly else None,
        (di.cal_start, di.cal_end),
        drought_cell_share,
        source,
    )
    cube = DroughtCube(
        times=times,
        lat=monthly.lat.values,
        lon=monthly.lon.values,
        cells=cells,
        dynamic=dynamic,
        static=static,
        baseline=np.ascontiguousarray(baseline.transpose(1, 0, 2)),
        target=np.ascontiguousarray(target.transpose(1, 0, 2)),
        obs=np.ascontiguousarray(obs.transpose(1, 0, 2)),
        pr=np.ascontiguousarray(time_by_cell(monthly["pr"])[:, cells].T.astype(np.float32)),
        scaler=scaler,
        spi_params=spi_params,
        drought_share=share,
        meta=meta,
    )
    if require_val_drought:
        check_val_drought(cube)
    return cube


def drought_months(cube: DroughtCube, split: str) -> int:
    """Months of a split in which at least ``drought_cell_share`` of land is in drought."""
    a, b = cube.split_range(split)
    return int(np.sum(cube.drought_share[a : b + 1] >= cube.meta["drought_cell_share"]))


def check_val_drought(cube: DroughtCube) -> None:
    """Raise unless the validation period contains drought months.

    Model selection on a drought-free validation period rewards near-baseline models
    (``reference/feasibility-hydrology.md`` section 4).

    Raises:
        DataError: No drought month in the validation period.
    """
    n = drought_months(cube, "val")
    if n == 0:
        a, b = cube.meta["splits"]["val"]
        raise DataError(
            f"validation period {a[:7]}..{b[:7]} contains no drought month (share of land "
            f"in drought >= {cube.meta['drought_cell_share']:g} in no month)",
            hint="move task.params.splits.val to a period with a drought, or set "
            "require_val_drought: false",
        )
    log.info("validation period has %d drought months", n)


def subsample_cells(cube: DroughtCube, k: int, offset: int = 0) -> np.ndarray:
    """Positions (into ``cube.cells``) of a regular ``k x k`` subsample of land cells.

    Args:
        cube: The cube.
        k: Keep every ``k``-th row and column (1 keeps all).
        offset: Row and column offset (``k // 2`` gives cells disjoint from offset 0).
    """
    if k <= 1:
        return np.arange(cube.cells.size)
    iy, ix = np.divmod(cube.cells, cube.lon.size)
    keep = (iy % k == offset % k) & (ix % k == offset % k)
    return np.flatnonzero(keep)


def cube_hash(*parts: Any) -> str:
    """Short stable hash of JSON-able parts (for cache file names)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
