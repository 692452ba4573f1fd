"""Drought indices: SPI, SPEI and a standardised soil-moisture index (SSMI), via xclim.

Every index is fitted once per calendar month over a configurable calibration period; the
fitted parameters are kept (and can be saved to NetCDF) so that a monthly update transforms
only the new months with the same parameters and gives the same values as a full recompute.

Conventions (see ``DESIGN.md`` section 3 and ``reference/hydrology.md`` sections 3 and 7):

* Inputs are canonical ``(time, lat, lon)`` grids with ERA5 short names: ``tp`` (precipitation
  amount, CF units ``"m"`` per step, or ``"mm"`` as E-OBS ``rr``, or a rate), ``pev`` (potential
  evaporation amount, ECMWF sign: negative means evaporation, so the water balance
  P - PET = ``tp + pev``) and ``swvl1`` (volumetric soil water, m3 m-3). Any other non-time
  dimensions (for example ``location``) are carried through unchanged.
* Amounts are turned into rates with :func:`xclim.core.units.amount2rate` and converted with
  :func:`xclim.core.units.convert_units_to`; monthly inputs are **mean daily rates in mm/d**
  (freq ``"MS"``), in float64. A k-month window is the rolling mean of k monthly rates (xclim's
  convention; equivalent to the k-month total up to the unequal month lengths).
* SPI: gamma with location fixed at 0, xclim ``method="APP"`` with ``fitkwargs={"floc": 0}``
  (Thom's approximate ML, the estimator of climate_indices), zero-inflated:
  p = p0 + (1 - p0) F(x), p0 = zeros / valid values in the calibration sample.
* SPEI: three-parameter log-logistic (scipy ``fisk``), xclim ``method="ML"``. xclim's APP
  estimator needs a fixed location, which a water balance (negative values) cannot have, so
  ML is the only xclim option; it is what ``reference/hydrology.md`` section 10 recommends.
* SSMI: per-calendar-month z-score of monthly-mean soil moisture over the calibration period
  (sample standard deviation, ``ddof=1``). A z-score rather than a fitted distribution: soil
  moisture is bounded and often bimodal near field capacity, where no single family fits well.
* Clipping: every index is clipped to ``[-CLIP, CLIP]`` with ``CLIP = 3.09`` (the 0.1 % and
  99.9 % normal quantiles, the WMO / climate_indices convention, Guttman 1999); xclim alone
  would floor at +/-8.21. The policy is written to each output's ``attrs["clipping"]``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import netCDF4
import numpy as np
import xarray as xr
from xclim.core.units import amount2rate, convert_units_to, units2pint
from xclim.indices import (
    standardized_precipitation_evapotranspiration_index,
    standardized_precipitation_index,
)
from xclim.indices.stats import preprocess_standardized_index, standardized_index_fit_params

from hydrology.aggregate import monthly_mean
from twins.errors import DataError

log = logging.getLogger(__name__)

CLIP: float = 3.09
"""Indices are clipped to ``[-CLIP, CLIP]``."""

CLIPPING_POLICY: str = (
    "clipped to [-3.09, 3.09] (WMO / climate_indices convention: the 0.1 % and 99.9 % "
    "normal quantiles, Guttman 1999)"
)

IndexKind = Literal["spi", "spei", "ssmi"]

SPI_FIT = {"dist": "gamma", "method": "APP", "fitkwargs": {"floc": 0}}
SPEI_FIT = {"dist": "fisk", "method": "ML", "fitkwargs": {}}

DEFAULT_INDICES: tuple[str, ...] = (
    "spi_1",
    "spi_3",
    "spi_6",
    "spi_12",
    "spei_3",
    "spei_12",
    "ssmi_1",
)
"""Index names are ``{kind}_{window in months}``."""

_LONG_NAMES = {
    "spi": "Standardized Precipitation Index",
    "spei": "Standardized Precipitation Evapotranspiration Index",
    "ssmi": "Standardized Soil Moisture Index",
}

# ---------------------------------------------------------------------------------------------
# Monthly inputs
# ---------------------------------------------------------------------------------------------


def _is_amount(da: xr.DataArray) -> bool:
    """True when ``da``'s units are an amount (length or mass per area), not a rate."""
    if "units" not in da.attrs:
        raise DataError(
            f"variable {da.name!r} has no 'units' attribute",
            hint="set CF units, e.g. 'm' for ERA5 tp or 'mm' for E-OBS rr",
        )
    dim = units2pint(da).dimensionality
    return dim in ({"[length]": 1}, {"[mass]": 1, "[length]": -2})


def _rate_factor(da: xr.DataArray) -> tuple[float, dict] | None:
    """Factor from ``da``'s units (an amount per step or a flux) to mm/d, and the rate attrs.

    Returns None when ``da`` is an amount on irregular steps (e.g. calendar months), whose
    rate needs each step's own duration.
    """
    times = da["time"].values
    step = None
    if _is_amount(da):
        if times.size < 2:
            return None
        steps = np.diff(times)
        if np.any(steps != steps[0]):
            return None
        step = steps[0]
    probe = {k: str(da.attrs[k]) for k in ("units", "standard_name") if k in da.attrs}
    factor, attrs = _unit_factor(tuple(sorted(probe.items())), times[:2] if step else None)
    return factor, dict(da.attrs) | attrs


def _unit_factor(
    attrs: tuple[tuple[str, str], ...], times: np.ndarray | None
) -> tuple[float, dict]:
    """xclim's conversion of a unit value (amount over ``times``' step, or flux) to mm/d."""
    key = (attrs, None if times is None else str(times[1] - times[0]))
    if key not in _FACTORS:
        coords = None if times is None else {"time": times}
        probe = xr.DataArray(np.ones(2), dims="time", coords=coords, attrs=dict(attrs))
        rate = probe if times is None else amount2rate(probe, sampling_rate_from_coord=True)
        rate = convert_units_to(rate, "mm/d", context="hydro")
        _FACTORS[key] = (float(rate.values[0]), dict(rate.attrs))
    factor, out = _FACTORS[key]
    return factor, dict(out)


_FACTORS: dict[tuple, tuple[float, dict]] = {}


def _to_monthly_rate(da: xr.DataArray) -> xr.DataArray:
    """Amount per step or flux -> monthly (MS) mean rate in mm/d, float64.

    Regular steps are averaged first and converted once (the conversion is a factor);
    irregular steps are converted step by step, then averaged.
    """
    if "time" not in da.dims:
        raise DataError(f"variable {da.name!r} has no 'time' dimension", hint="see io.canonical")
    conv = _rate_factor(da)
    if conv is None:
        rate = amount2rate(da, sampling_rate_from_coord=True) if _is_amount(da) else da
        rate = convert_units_to(rate, "mm/d", context="hydro")
        attrs = dict(rate.attrs)
        monthly = monthly_mean(rate)
    else:
        factor, attrs = conv
        monthly = monthly_mean(da) * factor
    monthly.attrs = attrs | {"units": "mm d-1", "cell_methods": "time: mean within months"}
    return monthly


def monthly_precip_rate(tp: xr.DataArray) -> xr.DataArray:
    """Monthly mean precipitation rate.

    Args:
        tp: Precipitation, dims ``(time, ...)``: an amount per time step (ERA5 ``tp`` in
            ``"m"``, E-OBS ``rr`` in ``"mm"``; daily or monthly steps) or a flux
            (``"kg m-2 s-1"``, ``"mm/d"``).

    Returns:
        Mean daily rate per month in mm/d, float64, dims ``(time, ...)`` with ``time`` at
        month starts (freq ``"MS"``).
    """
    out = _to_monthly_rate(tp)
    out.name = "pr"
    return out


def monthly_water_balance(
    tp: xr.DataArray, pev: xr.DataArray, precip_rate: xr.DataArray | None = None
) -> xr.DataArray:
    """Monthly mean climatic water balance P - PET.

    Args:
        tp: Precipitation amount, dims ``(time, ...)`` (see :func:`monthly_precip_rate`).
        pev: Potential evaporation amount with ECMWF sign (negative = evaporation), same
            grid and steps as ``tp``; any length units.
        precip_rate: ``monthly_precip_rate(tp)`` when the caller already has it (saves
            aggregating ``tp`` twice).

    Returns:
        P - PET = ``tp + pev`` as a mean daily rate per month in mm/d, float64, freq "MS".
    """
    if "units" not in pev.attrs:
        raise DataError("variable 'pev' has no 'units' attribute", hint="ERA5 pev is in 'm'")
    if "units" not in tp.attrs:
        raise DataError("variable 'tp' has no 'units' attribute", hint="ERA5 tp is in 'm'")
    # P and PET are averaged over their own valid steps (ERA5 masks both on the same cells).
    p = _to_monthly_rate(tp) if precip_rate is None else precip_rate
    out = p + _to_monthly_rate(pev)
    out.attrs = {
        "units": "mm d-1",
        "long_name": "climatic water balance P - PET",
        "cell_methods": p.attrs["cell_methods"],
    }
    out.name = "wb"
    return out


def monthly_soil_moisture(swvl1: xr.DataArray) -> xr.DataArray:
    """Monthly mean volumetric soil moisture.

    Args:
        swvl1: Soil water of layer 1, dims ``(time, ...)``, m3 m-3, any step.

    Returns:
        Monthly means in m3 m-3, float64, freq "MS".
    """
    attrs = dict(swvl1.attrs)
    out = monthly_mean(swvl1)
    out.attrs = attrs | {"units": attrs.get("units", "m3 m-3")}
    out.name = "swvl1"
    return out


# ---------------------------------------------------------------------------------------------
# Fitting and transforming
# ---------------------------------------------------------------------------------------------


def _check_monthly(da: xr.DataArray) -> None:
    if "time" not in da.dims or da.sizes["time"] == 0:
        raise DataError("expected a non-empty monthly series with a 'time' dimension")
    if da.sizes["time"] > 1:
        days = np.diff(da.time.dt.year.values * 12 + da.time.dt.month.values)
        if not np.all(days == 1):
            raise DataError(
                "monthly input must have consecutive months (one value per month)",
                hint="use monthly_precip_rate / monthly_water_balance / monthly_soil_moisture",
            )


def _calibration_slice(da: xr.DataArray, cal_start: str, cal_end: str) -> xr.DataArray:
    cal = da.sel(time=slice(cal_start, cal_end))
    if cal.sizes["time"] < 24:
        raise DataError(
            f"calibration period {cal_start}..{cal_end} holds {cal.sizes['time']} months",
            hint="choose a calibration period inside the data, ideally 30 years",
        )
    return cal


def _fit_xclim(
    da: xr.DataArray,
    kind: IndexKind,
    window: int,
    cal_start: str,
    cal_end: str,
) -> xr.DataArray:
    _check_monthly(da)
    spec = SPI_FIT if kind == "spi" else SPEI_FIT
    # Roll over the full series first, then cut the calibration period: the first months of
    # the calibration period then use the months before it, as xclim's own cal_start/cal_end
    # path and climate_indices do.
    rolled, _ = preprocess_standardized_index(da, freq="MS", window=window)
    cal = _calibration_slice(rolled, cal_start, cal_end)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        params = standardized_index_fit_params(
            cal,
            freq=None,
            window=1,
            dist=spec["dist"],
            method=spec["method"],
            zero_inflated=kind == "spi",
            fitkwargs=dict(spec["fitkwargs"]),
        )
    params.attrs.update(
        freq="MS",
        window=window,
        calibration_period=(str(cal_start), str(cal_end)),
        index=kind,
        units="",
    )
    params.name = f"{kind}_{window}_params"
    return params


def fit_spi(pr_monthly: xr.DataArray, window: int, cal_start: str, cal_end: str) -> xr.DataArray:
    """Fit SPI gamma parameters (location 0, APP) per calendar month.

    Args:
        pr_monthly: Monthly precipitation rate, dims ``(time, ...)``, mm/d (a flux unit).
        window: Accumulation in months (1, 3, 6, 12, ...).
        cal_start: First date of the calibration period, e.g. ``"1991-01-01"``.
        cal_end: Last date of the calibration period, e.g. ``"2020-12-31"``.

    Returns:
        Parameters, dims ``(month=12, ..., dparams=[a, loc, scale])``, with coords
        ``number_of_zeros`` / ``number_of_notnull`` (for p0) and the fit in ``attrs``.
    """
    return _fit_xclim(pr_monthly, "spi", window, cal_start, cal_end)


def fit_spei(wb_monthly: xr.DataArray, window: int, cal_start: str, cal_end: str) -> xr.DataArray:
    """Fit SPEI log-logistic (fisk, 3 parameters, ML) parameters per calendar month.

    Args:
        wb_monthly: Monthly water balance P - PET, dims ``(time, ...)``, mm/d.
        window: Accumulation in months.
        cal_start: First date of the calibration period.
        cal_end: Last date of the calibration period.

    Returns:
        Parameters, dims ``(month=12, ..., dparams=[c, loc, scale])``.
    """
    return _fit_xclim(wb_monthly, "spei", window, cal_start, cal_end)


def _finish(
    index: xr.DataArray,
    source: xr.DataArray,
    kind: IndexKind,
    window: int,
    params: xr.DataArray,
    clip: float,
) -> xr.DataArray:
    out = index.clip(-clip, clip)
    # Drop coordinates that came from the parameters (number_of_zeros, month, ...).
    out = out.drop_vars([c for c in out.coords if c not in source.coords])
    cal = params.attrs.get("calibration_period", ("", ""))
    out.attrs = {
        "units": "1",
        "long_name": f"{_LONG_NAMES[kind]} ({window}-month)",
        "window_months": int(window),
        "calibration_period": f"{cal[0]}/{cal[1]}",
        "clipping": CLIPPING_POLICY if clip == CLIP else f"clipped to [{-clip}, {clip}]",
    }
    if kind == "ssmi":
        out.attrs["method"] = "per-calendar-month z-score, ddof=1"
    else:
        out.attrs["distribution"] = str(params.attrs["scipy_dist"])
        out.attrs["fit_method"] = str(params.attrs["method"])
    out.name = f"{kind}_{window}"
    return out


def _check_params(params: xr.DataArray, kind: IndexKind, window: int | None) -> int:
    if params.attrs.get("index", kind) != kind:
        raise DataError(f"parameters are for {params.attrs.get('index')!r}, not {kind!r}")
    p_window = int(params.attrs["window"])
    if window is not None and window != p_window:
        raise DataError(f"window {window} does not match the fitted window {p_window}")
    return p_window


def spi(
    pr_monthly: xr.DataArray,
    window: int | None = None,
    params: xr.DataArray | None = None,
    cal_start: str | None = None,
    cal_end: str | None = None,
    clip: float = CLIP,
) -> xr.DataArray:
    """Standardized Precipitation Index.

    Either pass fitted ``params`` (from :func:`fit_spi`; only the months given are
    transformed) or ``window`` with ``cal_start``/``cal_end`` (fit, then transform).

    Args:
        pr_monthly: Monthly precipitation rate, dims ``(time, ...)``, mm/d. The first
            ``window - 1`` months are NaN: prepend that much history for an update.
        window: Accumulation in months; must match ``params`` when both are given.
        params: Fitted parameters, dims ``(month, ..., dparams)``.
        cal_start: Calibration start, used only when ``params`` is None.
        cal_end: Calibration end, used only when ``params`` is None.
        clip: Symmetric clipping bound.

    Returns:
        SPI, dims as ``pr_monthly``, dimensionless, named ``spi_{window}``.
    """
    if params is None:
        if window is None or cal_start is None or cal_end is None:
            raise DataError("spi needs either params or window, cal_start and cal_end")
        params = fit_spi(pr_monthly, window, cal_start, cal_end)
    window = _check_params(params, "spi", window)
    _check_monthly(pr_monthly)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        raw = standardized_precipitation_index(pr_monthly, params=params)
    return _finish(raw, pr_monthly, "spi", window, params, clip)


def spei(
    wb_monthly: xr.DataArray,
    window: int | None = None,
    params: xr.DataArray | None = None,
    cal_start: str | None = None,
    cal_end: str | None = None,
    clip: float = CLIP,
) -> xr.DataArray:
    """Standardized Precipitation Evapotranspiration Index (log-logistic, ML).

    Args:
        wb_monthly: Monthly water balance P - PET, dims ``(time, ...)``, mm/d.
        window: Accumulation in months; must match ``params`` when both are given.
        params: Fitted parameters from :func:`fit_spei`.
        cal_start: Calibration start, used only when ``params`` is None.
        cal_end: Calibration end, used only when ``params`` is None.
        clip: Symmetric clipping bound.

    Returns:
        SPEI, dims as ``wb_monthly``, dimensionless, named ``spei_{window}``.
    """
    if params is None:
        if window is None or cal_start is None or cal_end is None:
            raise DataError("spei needs either params or window, cal_start and cal_end")
        params = fit_spei(wb_monthly, window, cal_start, cal_end)
    window = _check_params(params, "spei", window)
    _check_monthly(wb_monthly)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        raw = standardized_precipitation_evapotranspiration_index(wb_monthly, params=params)
    return _finish(raw, wb_monthly, "spei", window, params, clip)


def fit_ssmi(
    sm_monthly: xr.DataArray, window: int = 1, cal_start: str = "", cal_end: str = ""
) -> xr.DataArray:
    """Fit the per-calendar-month mean and standard deviation of soil moisture.

    Args:
        sm_monthly: Monthly mean soil moisture, dims ``(time, ...)``, m3 m-3.
        window: Rolling mean over this many months before standardising (1 = none).
        cal_start: First date of the calibration period.
        cal_end: Last date of the calibration period.

    Returns:
        Parameters, dims ``(month=12, ..., dparams=[mean, std])``, in m3 m-3.
    """
    _check_monthly(sm_monthly)
    rolled = sm_monthly.rolling(time=window).mean() if window > 1 else sm_monthly
    cal = _calibration_slice(rolled, cal_start, cal_end)
    grouped = cal.groupby("time.month")
    mean = grouped.mean("time")
    std = grouped.std("time", ddof=1)
    params = xr.concat([mean, std], dim="dparams").assign_coords(dparams=["mean", "std"])
    params = params.transpose("month", ..., "dparams")
    params.attrs = {
        "freq": "MS",
        "window": window,
        "calibration_period": (str(cal_start), str(cal_end)),
        "index": "ssmi",
        "method": "zscore",
        "units": sm_monthly.attrs.get("units", "m3 m-3"),
    }
    params.name = f"ssmi_{window}_params"
    return params


def ssmi(
    sm_monthly: xr.DataArray,
    window: int | None = None,
    params: xr.DataArray | None = None,
    cal_start: str | None = None,
    cal_end: str | None = None,
    clip: float = CLIP,
) -> xr.DataArray:
    """Standardised soil-moisture index: per-calendar-month z-score, clipped.

    Args:
        sm_monthly: Monthly mean soil moisture, dims ``(time, ...)``, m3 m-3.
        window: Rolling window in months; must match ``params`` when both are given.
        params: Fitted parameters from :func:`fit_ssmi`.
        cal_start: Calibration start, used only when ``params`` is None.
        cal_end: Calibration end, used only when ``params`` is None.
        clip: Symmetric clipping bound.

    Returns:
        SSMI, dims as ``sm_monthly``, dimensionless; NaN where the calibration standard
        deviation is 0.
    """
    if params is None:
        if cal_start is None or cal_end is None:
            raise DataError("ssmi needs either params or cal_start and cal_end")
        params = fit_ssmi(sm_monthly, window or 1, cal_start, cal_end)
    window = _check_params(params, "ssmi", window)
    _check_monthly(sm_monthly)
    rolled = sm_monthly.rolling(time=window).mean() if window > 1 else sm_monthly
    month = rolled.time.dt.month
    mean = params.sel(dparams="mean", month=month).drop_vars(["month", "dparams"])
    std = params.sel(dparams="std", month=month).drop_vars(["month", "dparams"])
    z = (rolled - mean) / std.where(std > 0)
    return _finish(z, sm_monthly, "ssmi", window, params, clip)


# ---------------------------------------------------------------------------------------------
# A set of indices with stored parameters
# ---------------------------------------------------------------------------------------------

_INPUT_OF = {"spi": ("tp",), "spei": ("tp", "pev"), "ssmi": ("swvl1",)}


@dataclass(frozen=True)
class IndexSpec:
    """One index of a set: ``kind`` and ``window`` (months); ``name`` is ``kind_window``."""

    kind: IndexKind
    window: int

    @property
    def name(self) -> str:
        """Name such as ``"spi_3"``."""
        return f"{self.kind}_{self.window}"

    @classmethod
    def parse(cls, name: str) -> IndexSpec:
        """Parse ``"spi_3"`` into ``IndexSpec("spi", 3)``."""
        kind, _, win = name.partition("_")
        if kind not in _INPUT_OF or not win.isdigit() or int(win) < 1:
            raise DataError(
                f"unknown index {name!r}", hint="use spi_N, spei_N or ssmi_N with N >= 1 months"
            )
        return cls(kind, int(win))  # type: ignore[arg-type]


def check_index_names(names: list[str]) -> list[str]:
    """Validate index names (``spi_3``, ``ssmi_1``, ...) for a pydantic field validator.

    Raises:
        ValueError: A name that :meth:`IndexSpec.parse` refuses (its message and hint).
    """
    for name in names:
        try:
            IndexSpec.parse(name)
        except DataError as exc:
            raise ValueError(f"{exc}; {exc.hint}") from None
    return names


class DroughtIndices:
    """A configurable set of drought indices with fitted, persistable parameters.

    Example::

        di = DroughtIndices(["spi_3", "spei_3", "ssmi_1"], "1991-01-01", "2020-12-31")
        di.fit(ds)                       # ds: Dataset with tp, pev, swvl1 (time, lat, lon)
        di.save("indices.nc")
        out = DroughtIndices.load("indices.nc").transform(new_months, history=ds)

    Args:
        indices: Index names ``{spi|spei|ssmi}_{window}``.
        cal_start: First date of the calibration period.
        cal_end: Last date of the calibration period.
        clip: Symmetric clipping bound for every index.
    """

    def __init__(
        self,
        indices: Iterable[str] = DEFAULT_INDICES,
        cal_start: str = "1991-01-01",
        cal_end: str = "2020-12-31",
        clip: float = CLIP,
    ) -> None:
        self.specs = [IndexSpec.parse(n) for n in indices]
        if not self.specs:
            raise DataError("no indices requested")
        self.cal_start = str(cal_start)
        self.cal_end = str(cal_end)
        self.clip = float(clip)
        self.params: dict[str, xr.DataArray] = {}

    @property
    def names(self) -> list[str]:
        """Index names in order."""
        return [s.name for s in self.specs]

    @property
    def history_months(self) -> int:
        """Months of history an update needs before its first new month (max window - 1)."""
        return max(s.window for s in self.specs) - 1

    def _inputs(self, ds: xr.Dataset) -> dict[str, xr.DataArray]:
        kinds = {s.kind for s in self.specs}
        needed = sorted({v for k in kinds for v in _INPUT_OF[k]})
        missing = [v for v in needed if v not in ds]
        if missing:
            raise DataError(
                f"dataset lacks {missing} needed for {self.names}",
                hint="canonical names are tp, pev, swvl1",
            )
        out: dict[str, xr.DataArray] = {}
        if "spi" in kinds:
            out["spi"] = monthly_precip_rate(ds["tp"])
        if "spei" in kinds:
            out["spei"] = monthly_water_balance(ds["tp"], ds["pev"], precip_rate=out.get("spi"))
        if "ssmi" in kinds:
            out["ssmi"] = monthly_soil_moisture(ds["swvl1"])
        return out

    def fit(self, ds: xr.Dataset) -> DroughtIndices:
        """Fit every index over the calibration period of ``ds``.

        Args:
            ds: Canonical dataset, dims ``(time, lat, lon)``, daily or monthly, holding the
                variables the indices need (``tp``; ``pev`` for SPEI; ``swvl1`` for SSMI).

        Returns:
            ``self``, with :attr:`params` filled.
        """
        inputs = self._inputs(ds)
        fitters = {"spi": fit_spi, "spei": fit_spei, "ssmi": fit_ssmi}
        for s in self.specs:
            log.info("fitting %s over %s..%s", s.name, self.cal_start, self.cal_end)
            self.params[s.name] = fitters[s.kind](
                inputs[s.kind], s.window, self.cal_start, self.cal_end
            ).compute()
        return self

    def transform(self, ds: xr.Dataset, history: xr.Dataset | None = None) -> xr.Dataset:
        """Compute every index for the months of ``ds`` with the stored parameters.

        Args:
            ds: New data (canonical dataset, whole months).
            history: Earlier data on the same grid; its last :attr:`history_months` months
                before ``ds`` fill the accumulation windows. Without it the first
                ``window - 1`` months of each index are NaN.

        Returns:
            Dataset of indices ``{kind}_{window}``, dims ``(time, ...)`` at month starts,
            covering the months of ``ds`` only.
        """
        if not self.params:
            raise DataError("DroughtIndices has no fitted parameters", hint="call fit() or load()")
        data = ds
        if history is not None:
            vars_ = [v for v in ds.data_vars if v in history.data_vars]
            hist = history[vars_].sel(time=history.time < ds.time.values[0])
            data = xr.concat([hist, ds[vars_]], dim="time")
        inputs = self._inputs(data)
        first = ds["time"].resample(time="MS").count().time.values[0]
        out = {}
        funcs = {"spi": spi, "spei": spei, "ssmi": ssmi}
        for s in self.specs:
            x = inputs[s.kind]
            n_before = int((x.time < first).sum())
            if history is not None and n_before < s.window - 1:
                log.warning(
                    "%s: %d months of history before %s, %d needed; leading months are NaN",
                    s.name,
                    n_before,
                    first,
                    s.window - 1,
                )
            x = x.isel(time=slice(max(n_before - (s.window - 1), 0), None))
            idx = funcs[s.kind](x, params=self.params[s.name], clip=self.clip)
            out[s.name] = idx.sel(time=idx.time >= first)
        res = xr.Dataset(out)
        res.attrs = {
            "clipping": CLIPPING_POLICY if self.clip == CLIP else f"clipped to +/-{self.clip}",
            "calibration_period": f"{self.cal_start}/{self.cal_end}",
        }
        return res

    def fit_transform(self, ds: xr.Dataset) -> xr.Dataset:
        """Fit on the calibration period of ``ds`` and transform all of ``ds``."""
        return self.fit(ds).transform(ds)

    def save(self, path: str | Path) -> Path:
        """Write the fitted parameters to NetCDF, one group per index.

        Args:
            path: Output file (``.nc``); overwritten.

        Returns:
            The path written.
        """
        if not self.params:
            raise DataError("nothing to save: fit() first")
        path = Path(path)
        root = xr.Dataset(
            attrs={
                "indices": json.dumps(self.names),
                "cal_start": self.cal_start,
                "cal_end": self.cal_end,
                "clip": self.clip,
                "clipping": CLIPPING_POLICY,
                "description": "Fitted drought-index parameters (twins.hydrology.indices)",
            }
        )
        root.to_netcdf(path, mode="w", engine="netcdf4")
        for name, p in self.params.items():
            p = p.copy()
            p.attrs = {k: json.dumps(v) for k, v in p.attrs.items()}
            p.to_dataset(name="params").to_netcdf(path, mode="a", group=name, engine="netcdf4")
        return path

    @classmethod
    def load(cls, path: str | Path) -> DroughtIndices:
        """Read parameters written by :meth:`save`.

        Args:
            path: File written by :meth:`save`.

        Returns:
            A fitted :class:`DroughtIndices`.
        """
        path = Path(path)
        if not path.exists():
            raise DataError(f"no parameter file at {path}")
        with netCDF4.Dataset(path) as nc:
            attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        names = json.loads(attrs["indices"])
        obj = cls(names, attrs["cal_start"], attrs["cal_end"], float(attrs["clip"]))
        for name in names:
            with xr.open_dataset(path, group=name, engine="netcdf4") as g:
                p = g["params"].load()
            p.attrs = {k: _unjson(v) for k, v in p.attrs.items()}
            obj.params[name] = p
        return obj


def _unjson(v: str) -> object:
    out = json.loads(v)
    return tuple(out) if isinstance(out, list) else out


def compute_indices(
    ds: xr.Dataset,
    indices: Sequence[str] = DEFAULT_INDICES,
    cal_start: str = "1991-01-01",
    cal_end: str = "2020-12-31",
) -> xr.Dataset:
    """Fit and compute a set of indices in one call (see :class:`DroughtIndices`)."""
    return DroughtIndices(indices, cal_start, cal_end).fit_transform(ds)
