"""Plausibility gates of ingested climate grids: every bound in one place, configurable.

A value that passes the readers (right names, units that fit, a clean time axis) can still
be impossible: negative rain, soil water in percent labelled as a fraction, kelvin values
labelled ``degC``, a fill value written without a ``_FillValue`` attribute, a month that is
mostly missing. :func:`check_gates` refuses such data before anything is computed or
written, with one line naming the file, the variable, the offending value (with its time
and place) or share, and the bound it breaks.

Bounds are in fixed units, after the declared units are converted (``GATE_UNITS``):

============  ===============  ===============================================================
variable      unit             default bound and where it comes from
============  ===============  ===============================================================
``tp``        mm/day (daily    [-0.1, 1825]: 1825 mm is the world-record 24-hour rainfall
              mean rate)       (Foc-Foc, La Reunion, 7-8 January 1966, WMO archive); -0.1
                               admits the rounding of 16-bit packed data near zero (a CDS
                               scale factor of ~1e-6 m per hourly step is ~0.01 mm/day)
``e``,        mm/day,          [-20, 50]: the largest pan evaporation measured is about
``pev``       evaporation      25 mm/day; dew and condensation deposit a few mm/day at most
              positive
``t2m``,      K                [170, 340]: the record low 184 K (Vostok, 1983) and record
``mn2t``,                      high 330 K (Death Valley, 1913) with a margin; 290 written as
``mx2t``                       ``degC`` becomes 563 K and is refused
``swvl1``     m3 m-3           [0, 1]: a volume fraction (percent written as a fraction is
                               refused)
``lsm``       1                [0, 1]: a land fraction
``z``         m (height)       [-500, 9000]: Dead Sea shore -430 m, Everest 8849 m
============  ===============  ===============================================================

Besides the bounds: values equal to a common fill sentinel (``FILL_SENTINELS``: -32767,
-9999, the netCDF default fill 9.96921e36, the CMIP 1e20, ...) are refused as undeclared
fill values (a declared ``_FillValue``/``missing_value`` is decoded to NaN by the reader, so
a sentinel left in the data was not declared), and a month whose share of missing values
over land exceeds ``max_missing_share`` is refused.

A user with a wet tropical grid widens one bound with a key: ``task.params.gates.tp.max=2500``
for training, ``twins twin init ... --gates tp.max=2500`` for a twin (it keeps them in its
state), ``twins twin update ... --gates tp.max=2500`` (``DroughtTwin.update(data,
{"gates": ["tp.max=2500"]})``) for one twin update.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hydrology.aggregate import monthly_mean
from hydrology.timeaxis import month_label, time_steps
from hydrology.units import evaporation_positive, to_units
from twins.errors import ConfigError, DataError

__all__ = ["FILL_SENTINELS", "GATE_UNITS", "Bound", "Gates", "check_gates", "parse_overrides"]

log = logging.getLogger(__name__)

#: Unit of each variable's bounds (evaporation as a positive quantity).
GATE_UNITS: dict[str, str] = {
    "tp": "mm/day",
    "e": "mm/day",
    "pev": "mm/day",
    "t2m": "K",
    "mn2t": "K",
    "mx2t": "K",
    "swvl1": "m3 m-3",
    "lsm": "1",
    "z": "m",
}
#: Fill values that files carry without declaring them, in the file's own units.
FILL_SENTINELS: tuple[float, ...] = (
    -32767.0,
    -32768.0,
    -9999.0,
    -999.0,
    9.969209968386869e36,  # netCDF default fill of float and double
    1e20,  # CMIP missing_value
    -1e20,
)
# relative distance under which a value counts as a sentinel: float32 rounding is 6e-8
_SENTINEL_RTOL = 1e-6
_WATER = ("tp", "e", "pev")
_DAY = 86400.0


class Bound(BaseModel):
    """Plausible range of one variable, in its ``GATE_UNITS`` unit (None = no bound)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bound:
        for value in (self.min, self.max):
            if value is not None and not np.isfinite(value):
                raise ValueError(f"bounds must be finite, got {value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self


class Gates(BaseModel):
    """Every plausibility bound of the ingest (see the module docstring for the sources).

    Attributes:
        tp: Precipitation, daily mean rate [mm/day].
        e: Evaporation, positive upward [mm/day].
        pev: Potential evaporation, positive upward [mm/day].
        t2m: 2 m temperature [K].
        mn2t: Daily minimum 2 m temperature [K].
        mx2t: Daily maximum 2 m temperature [K].
        swvl1: Volumetric soil water of layer 1 [m3 m-3].
        lsm: Land-sea mask [1].
        z: Surface height [m] (geopotential / g).
        max_missing_share: Largest share of missing values over land cells in any month,
            per variable (0..1).
        fill_sentinels: Values refused as undeclared fill values (file units).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tp: Bound = Bound(min=-0.1, max=1825.0)
    e: Bound = Bound(min=-20.0, max=50.0)
    pev: Bound = Bound(min=-20.0, max=50.0)
    t2m: Bound = Bound(min=170.0, max=340.0)
    mn2t: Bound = Bound(min=170.0, max=340.0)
    mx2t: Bound = Bound(min=170.0, max=340.0)
    swvl1: Bound = Bound(min=0.0, max=1.0)
    lsm: Bound = Bound(min=0.0, max=1.0)
    z: Bound = Bound(min=-500.0, max=9000.0)
    max_missing_share: float = Field(0.25, ge=0.0, le=1.0)
    fill_sentinels: tuple[float, ...] = FILL_SENTINELS

    @model_validator(mode="before")
    @classmethod
    def _partial_bounds(cls, data: Any) -> Any:
        """``{"tp": {"max": 2500}}`` keeps the default ``tp.min`` (a key changes one side)."""
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for name, info in cls.model_fields.items():
            given, default = out.get(name), info.default
            if isinstance(given, Mapping) and isinstance(default, Bound):
                out[name] = {**default.model_dump(), **given}
        return out

    def bound(self, name: str) -> Bound:
        """The bound of canonical variable ``name``."""
        value = getattr(self, name)
        assert isinstance(value, Bound)
        return value

    def with_overrides(self, overrides: Gates | Mapping[str, Any] | Sequence[str] | None) -> Gates:
        """These gates with some keys changed.

        Args:
            overrides: None (unchanged); a :class:`Gates` (used as is); a mapping with dotted
                or nested keys (``{"tp.max": 2500}``, ``{"tp": {"max": 2500}}``); or
                ``"key=value"`` strings (``["tp.max=2500", "max_missing_share=0.5"]``).

        Returns:
            The new, validated gates.

        Raises:
            ConfigError: Unknown key, malformed item or invalid value (one line naming it).
        """
        if overrides is None:
            return self
        if isinstance(overrides, Gates):
            return overrides
        if isinstance(overrides, str) or not isinstance(overrides, Mapping):
            overrides = parse_overrides(list(overrides))
        merged = self.model_dump()
        for key, value in overrides.items():
            _set(merged, str(key).split("."), value)
        try:
            return Gates.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(
                f"gates: {where}: {err['msg']} (got {err.get('input')!r})",
                hint=f"keys: {', '.join(Gates.model_fields)}; bounds take .min/.max",
            ) from None


def _set(tree: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``tree[path[0]][path[1]]... = value``, merging nested mappings."""
    head, rest = path[0], path[1:]
    if not rest:
        if isinstance(value, Mapping) and isinstance(tree.get(head), dict):
            for k, v in value.items():
                _set(tree[head], [str(k)], v)
        else:
            tree[head] = value
        return
    node = tree.get(head)
    if not isinstance(node, dict):
        node = tree[head] = {} if node is None else node
    if not isinstance(node, dict):
        raise ConfigError(f"gates: {head} has no key {'.'.join(rest)!r}")
    _set(node, rest, value)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["tp.max=2500", "tp.min=none"]`` -> ``{"tp.max": 2500.0, "tp.min": None}``.

    Values are read as JSON (numbers, ``null``, lists such as ``[-9999]``); ``none`` means
    no bound.

    Raises:
        ConfigError: An item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"gates: {item!r} is not key=value", hint="e.g. tp.max=2500 or tp.min=none"
            )
        text = text.strip()
        if text.lower() in ("none", "null"):
            value: Any = None
        else:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
        out[key.strip()] = value
    return out


# --------------------------------------------------------------------------------- checks


def _gate_values(da: xr.DataArray, name: str) -> xr.DataArray:
    """``da`` in its gate unit; water variables as daily mean rates (sub-daily steps averaged
    over each day, so an hourly burst is judged against the daily record)."""
    if name in ("swvl1", "lsm") and not str(da.attrs.get("units", "")).strip():
        return da  # a fraction without units: validate accepts it as dimensionless
    if name in _WATER:
        out = to_units(da, "mm/day")
        if name != "tp":
            out = evaporation_positive(out)
        if "time" in out.dims and out.sizes["time"] > 1:
            step = float(time_steps(out.indexes["time"][:2])[0])
            if step < _DAY:
                out = out.resample(time="1D").mean()
        return out
    return to_units(da, GATE_UNITS[name])


def _convert_or_skip(raw: xr.DataArray, name: str, source: str, label: str) -> xr.DataArray | None:
    """:func:`_gate_values`, or None (logged) when no rate follows from a single step."""
    try:
        return _gate_values(raw, name)
    except DataError as exc:
        log.warning("%s: %s: bounds not checked (%s)", source, label, exc)
        return None


def _where(da: xr.DataArray, pick: str) -> tuple[float, str]:
    """Value and place (``time=..., lat=..., lon=...``) of the min or max of ``da``."""
    fill = np.inf if pick == "min" else -np.inf
    filled = da.fillna(fill)
    dims = list(da.dims)
    if not dims:
        return float(da), ""
    idx = (filled.argmin if pick == "min" else filled.argmax)(dim=dims)
    cell = da.isel({d: int(i) for d, i in idx.items()})
    value = float(cell)
    parts = []
    for name in (*dims, *[c for c in ("lat", "lon") if c not in dims]):
        if name in cell.coords:
            v = cell.coords[name].values
            parts.append(f"{name}={str(v)[:19] if name == 'time' else f'{float(v):g}'}")
    return value, " at " + ", ".join(parts) if parts else ""


def _sentinel(value: float, sentinels: Sequence[float]) -> float | None:
    for s in sentinels:
        if np.isfinite(value) and abs(value - s) <= _SENTINEL_RTOL * abs(s):
            return s
    return None


def _label(da: xr.DataArray, name: str) -> str:
    src = da.attrs.get("source_name", name)
    return f"variable '{name}'" + (f" (file variable '{src}')" if src != name else "")


def _read_error(source: str, label: str, exc: Exception) -> DataError:
    text = " ".join(str(exc).split())[:200]
    return DataError(
        f"{source}: file truncated or unreadable: cannot read {label} "
        f"({type(exc).__name__}: {text})",
        hint="download the file again",
    )


def _check_range(
    raw: xr.DataArray, name: str, source: str, gates: Gates, stats: dict[str, float]
) -> None:
    """Refuse sentinels (raw extremes) and values outside the bound (converted extremes)."""
    label = _label(raw, name)
    units = raw.attrs.get("units", "")
    for pick in ("min", "max"):
        s = _sentinel(stats[f"raw_{pick}"], gates.fill_sentinels)
        if s is not None:
            value, where = _where(raw, pick)
            raise DataError(
                f"{source}: {label} holds {value:g} (units '{units}'){where}, an undeclared "
                f"fill value: it equals the fill sentinel {s:g} but no _FillValue or "
                "missing_value attribute declares it (sentinels: gates.fill_sentinels)",
                hint="declare it: ds[var].encoding['_FillValue'] = value, or set the "
                "attribute with ncatted; then it reads as missing",
            )
    for pick in ("min", "max"):
        if np.isinf(stats[f"raw_{pick}"]):
            value, where = _where(raw, pick)
            raise DataError(
                f"{source}: {label} holds the value {value:g}{where}; values must be finite "
                f"(bound gates.{name}.{pick})",
                hint="check how the file was produced; missing values must be NaN or a "
                "declared _FillValue",
            )
    bound = gates.bound(name)
    unit = "" if GATE_UNITS[name] == "1" else f" {GATE_UNITS[name]}"
    for pick, limit in (("min", bound.min), ("max", bound.max)):
        value = stats[f"conv_{pick}"]
        if limit is None or np.isnan(value):  # an all-NaN variable has no extreme
            continue
        if (pick == "min" and value < limit) or (pick == "max" and value > limit):
            conv = stats["conv"]
            value, where = _where(conv, pick)  # type: ignore[arg-type]
            side = (
                "below the plausible minimum" if pick == "min" else "above the plausible maximum"
            )
            what = " (daily mean rate, evaporation positive)" if name in ("e", "pev") else ""
            what = " (daily mean rate)" if name == "tp" else what
            raise DataError(
                f"{source}: {label} has the value {value:.6g}{unit}{what}{where}, {side} "
                f"{limit:g}{unit} (bound gates.{name}.{pick}; file units '{units}')",
                hint=f"check the units attribute and the source; if the value is real, widen "
                f"the bound with the key {name}.{pick} (training: task.params.gates."
                f"{name}.{pick}=...; twin update: gates {name}.{pick}=...)",
            )


def check_gates(
    ds: xr.Dataset,
    source: str,
    gates: Gates,
    land: xr.DataArray | None = None,
    variables: Sequence[str] | None = None,
) -> None:
    """Refuse implausible data; read every value of the gated variables once.

    Checks per variable, in order: undeclared fill sentinels (the variable's extremes in its
    file units), the bound (extremes after unit conversion), the share of missing values over
    land per month (dynamic variables). Statics go first so that ``lsm`` is sound before it
    defines land.

    Args:
        ds: Canonical dataset (:func:`hydrology.io.normalise`), numpy- or dask-backed; dims
            ``(time, lat, lon)`` or ``(time, <points>)``, statics without ``time``.
        source: File name(s) for the messages.
        gates: The bounds.
        land: Boolean land cells on the spatial dims; default ``lsm > 0.5`` when ``lsm`` is
            present, else the cells with a value in some month of some gated variable.
        variables: Canonical names to check; default every gated variable present.

    Raises:
        DataError: One line naming ``source``, the variable, the value (time, place) or the
            share and month, and the bound (``gates.<var>.<min|max>``,
            ``gates.max_missing_share``, ``gates.fill_sentinels``); or a variable whose data
            cannot be read (``file truncated or unreadable``).
    """
    names = [v for v in (variables or GATE_UNITS) if v in GATE_UNITS and v in ds.data_vars]
    names.sort(key=lambda v: "time" in ds[v].dims)
    shares: dict[str, xr.DataArray] = {}
    for name in names:
        raw = ds[name]
        label = _label(raw, name)
        try:
            with warnings.catch_warnings(), np.errstate(invalid="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
                conv = _convert_or_skip(raw, name, source, label)
                lazy: dict[str, Any] = {"raw_min": raw.min(), "raw_max": raw.max()}
                if conv is not None:
                    lazy.update(conv_min=conv.min(), conv_max=conv.max())
                if "time" in raw.dims:
                    lazy["share"] = monthly_mean(raw.isnull().astype(np.float32))
                keys = list(lazy)
                got = dict(zip(keys, dask.compute(*[lazy[k] for k in keys]), strict=True))
        except (DataError, ConfigError):
            raise
        except Exception as exc:  # any reader error: HDF5, netCDF-C, zarr, OSError
            raise _read_error(source, label, exc) from None
        stats: dict[str, Any] = {k: float(v) for k, v in got.items() if k != "share"}
        stats.setdefault("conv_min", np.nan)
        stats.setdefault("conv_max", np.nan)
        stats["conv"] = conv
        _check_range(raw, name, source, gates, stats)
        if "share" in got:
            shares[name] = got["share"]
    if not shares:
        return
    if land is None:
        if "lsm" in ds.data_vars:
            land = _gate_values(ds["lsm"], "lsm") > 0.5
        else:
            land = None
            for share in shares.values():
                some = (share < 1).any("time")
                land = some if land is None else land | some
    assert land is not None
    land = land.compute()
    n_land = int(land.sum())
    if n_land == 0:
        return
    for name, share in shares.items():
        per_month = share.where(land).sum([d for d in share.dims if d != "time"]) / n_land
        k = int(np.argmax(per_month.values))
        worst = float(per_month.values[k])
        if worst > gates.max_missing_share:
            month = month_label(share.indexes["time"][k])
            what = (
                f"is entirely NaN over land in {month}"
                if worst >= 1
                else f"misses {worst:.1%} of its land values in {month}"
            )
            raise DataError(
                f"{source}: {_label(ds[name], name)} {what} ({n_land} land cells; missing "
                f"share {worst:.3f} > bound {gates.max_missing_share:g}, "
                "gates.max_missing_share)",
                hint="check the download of that month; if the gaps are real, raise "
                "gates max_missing_share",
            )
