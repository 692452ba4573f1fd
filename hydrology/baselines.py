"""Reference forecasts of a drought index: persistence, climatology, overlap-aware analogues.

All forecasts are returned on the **verification (target) time** axis: the value at month
T is the forecast for T issued at T - lead, so it can be scored directly against the
observed index at T. Months without enough past data are NaN.

* :func:`persistence`: index(T) := index(T - lead).
* :func:`climatology`: 0 everywhere (the mean of a standardised index over its calibration
  period, by construction) or, with ``calibration`` given, the calendar-month mean of the
  index over that period (absorbs the small bias the fit leaves, and any clipping).
* :func:`overlap_analogue`: an SPI-``window`` value at T shares ``window - lead`` months
  with what is already observed at the issue month T - lead. Keep those observed months,
  draw the ``lead`` unknown months from the same calendar months of every training year
  (an ensemble; ESP), push each completed window through the fitted zero-inflated gamma and
  Phi^-1, and average the ensemble in index space. Analogue blocks never contain a month of
  the target's calendar year (leave-one-out), so the truth of the unknown months cannot
  leak in. At ``lead >= window`` nothing is observed and the forecast is the leave-one-out
  mean of the training years' SPI for that calendar month, i.e. a climatology.
  (``reference/feasibility-hydrology.md`` sections 2-4: the honest bar at leads 1-2.)
  A gap among the observed months (a gauge record missing a month) is filled, member by
  member, from the analogue year's same month, as if it were unknown: the forecast then
  degrades towards the longer-lead analogue instead of becoming undefined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy import special, stats

from twins.errors import DataError

from .indices import CLIP, CLIPPING_POLICY


def persistence(index: xr.DataArray, lead: int) -> xr.DataArray:
    """Persistence forecast on the target-time axis.

    Args:
        index: Observed index, dims ``(time, ...)``, monthly.
        lead: Lead in months (>= 1).

    Returns:
        Forecast, same dims: value at T is ``index[T - lead]``; the first ``lead`` months NaN.
    """
    if lead < 1:
        raise ValueError("lead must be >= 1")
    out = index.shift(time=lead)
    out.attrs = dict(index.attrs) | {"forecast": "persistence", "lead_months": lead}
    out.name = index.name
    return out


def climatology(
    index: xr.DataArray, lead: int = 1, calibration: tuple[str, str] | None = None
) -> xr.DataArray:
    """Climatological forecast (independent of the lead).

    Args:
        index: Observed index, dims ``(time, ...)``; only its grid, NaN mask and (with
            ``calibration``) its calibration-period values are used.
        lead: Lead in months; recorded only.
        calibration: ``(start, end)``: forecast the calendar-month mean of ``index`` over this
            period instead of 0.

    Returns:
        Forecast, same dims; NaN where the cell is NaN over the whole record (sea).
    """
    land = index.notnull().any("time")
    if calibration is None:
        out = xr.zeros_like(index, dtype=float).where(land)
    else:
        clim = index.sel(time=slice(*calibration)).groupby("time.month").mean("time")
        out = clim.sel(month=index.time.dt.month).drop_vars("month").where(land)
        out = out.transpose(*index.dims)
    out.attrs = dict(index.attrs) | {"forecast": "climatology", "lead_months": lead}
    out.name = index.name
    return out


def _years_of(train_years: tuple[int, int] | Sequence[int]) -> set[int]:
    ty = list(train_years)
    if isinstance(train_years, tuple) and len(ty) == 2:
        return set(range(int(ty[0]), int(ty[1]) + 1))
    return {int(y) for y in ty}


def spi_from_window_mean(x: np.ndarray, params: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """Zero-inflated gamma CDF then Phi^-1, clipped to +/-CLIP.

    Matches xclim's transform (p = p0 + (1 - p0) F(x) for x > 0, p = p0 for x = 0); a
    missing window (NaN, a gap in a gauge record) stays NaN.

    Args:
        x: Window-mean precipitation, mm/d, shape ``(..., *cells)``, NaN where unknown.
        params: Gamma ``(a, loc, scale)`` per cell, shape ``(3, *cells)``.
        p0: Probability of zero per cell, shape ``cells``.

    Returns:
        SPI, shape of ``x``.
    """
    a, loc, scale = params
    with np.errstate(invalid="ignore", divide="ignore"):
        f = stats.gamma.cdf(x, a, loc=loc, scale=scale)
        p = np.where(x > 0, p0 + (1 - p0) * f, np.where(np.isnan(x), np.nan, p0))
        z = special.ndtri(p)
    return np.clip(z, -CLIP, CLIP)


def _analogue_months(
    x: np.ndarray,
    years: np.ndarray,
    pos: dict[tuple[int, int], int],
    cand_years: np.ndarray,
    years_ok: set[int],
    window: int,
    n_known: int,
) -> np.ndarray:
    """The observed-part months of every analogue window, to stand in for missing ones.

    Returns:
        ``(year, 12, n_known, *cells)``: for analogue year ``y`` and target calendar month
        ``m``, the values of the first ``n_known`` months of the ``window`` months ending at
        ``(y, m)``; NaN outside the record or the analogue years.
    """
    out = np.full((len(cand_years), 12, n_known, *x.shape[1:]), np.nan)
    for j, y in enumerate(cand_years):
        for m in range(12):
            end = pos.get((int(y), m + 1))
            if end is None:
                continue
            for w in range(n_known):
                k = end - window + 1 + w
                if k >= 0 and int(years[k]) in years_ok:
                    out[j, m, w] = x[k]
    return out


def overlap_analogue(
    pr_monthly: xr.DataArray,
    params: xr.DataArray,
    window: int = 3,
    lead: int = 1,
    train_years: tuple[int, int] | Sequence[int] | None = None,
    return_members: bool = False,
) -> xr.DataArray:
    """Overlap-aware analogue (ESP) forecast of SPI-``window`` at lead ``lead``.

    Args:
        pr_monthly: Monthly precipitation rate, dims ``(time, ...)``, mm/d (the series the
            SPI was computed from; observed months up to each issue month are used, plus the
            training years' months for the analogues).
        params: SPI parameters from :func:`hydrology.indices.fit_spi` with the same window.
        window: SPI accumulation in months.
        lead: Lead in months (>= 1).
        train_years: Analogue years, ``(first, last)`` inclusive or an explicit sequence.
            Defaults to the calibration years recorded in ``params``.
        return_members: Also return the members (dim ``member`` = analogue year, NaN where
            a year is excluded for that target).

    Returns:
        Ensemble-mean SPI on the target-time axis, dims as ``pr_monthly``; or, with
        ``return_members``, a DataArray with a leading ``member`` dim. NaN where the
        observed part of the window is not available.
    """
    if lead < 1:
        raise ValueError("lead must be >= 1")
    if int(params.attrs.get("window", window)) != window:
        raise DataError(f"params were fitted for window {params.attrs['window']}, not {window}")
    if params.attrs.get("scipy_dist", "gamma") != "gamma":
        raise DataError("overlap_analogue needs gamma SPI parameters")
    if train_years is None:
        cal = params.attrs["calibration_period"]
        train_years = (int(str(cal[0])[:4]), int(str(cal[1])[:4]))
    years_ok = _years_of(train_years)

    pr = pr_monthly.transpose("time", ...)
    x = pr.values.astype(float)
    n_t = x.shape[0]
    cells = x.shape[1:]
    years = pr.time.dt.year.values
    months = pr.time.dt.month.values
    cand_years = np.array(sorted(years_ok))

    # Per calendar month: gamma params (3, *cells) and p0 (*cells).
    par = params.transpose("month", "dparams", *pr.dims[1:])
    p_vals = par.sel(dparams=["a", "loc", "scale"]).values
    nz = par["number_of_zeros"].values.astype(float)
    nn = par["number_of_notnull"].values.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p0_all = np.where(nn > 0, nz / nn, np.nan)
    month_pos = {int(m): i for i, m in enumerate(par["month"].values)}

    # Index of each (year, month) in the series.
    pos = {(int(y), int(m)): i for i, (y, m) in enumerate(zip(years, months, strict=True))}

    n_known = max(window - lead, 0)
    n_unknown = window - n_known
    # Analogue blocks: for each candidate year and calendar month, the sum of the
    # n_unknown months ending there, and the calendar years the block spans.
    n_c = len(cand_years)
    block_sum = np.full((n_c, 12, *cells), np.nan)
    block_ok = np.zeros((n_c, 12), bool)
    block_years = np.zeros((2, n_c, 12), np.int64)  # first and last year of each block
    for j, y in enumerate(cand_years):
        for m in range(12):
            end = pos.get((int(y), m + 1))
            if end is None or end - n_unknown + 1 < 0:
                continue
            block = np.arange(end - n_unknown + 1, end + 1)
            if not set(years[block].tolist()) <= years_ok:
                continue
            block_ok[j, m] = True
            block_years[:, j, m] = years[block].min(), years[block].max()
            block_sum[j, m] = x[block].sum(axis=0)
    # The observed part of each target's window, issued at i - lead.
    known_ok = np.ones(n_t, bool)
    known = np.full((n_t, n_known, *cells), np.nan)
    known_sum = np.zeros((n_t, *cells))
    for i in range(n_t):
        start = i - window + 1
        if n_known and start < 0:
            known_ok[i] = False
        elif n_known:
            known[i] = x[start : start + n_known]
            known_sum[i] = known[i].sum(axis=0)
    gappy = bool(n_known) and bool(np.isnan(known[known_ok]).any())
    fill = None
    if gappy:
        fill = _analogue_months(x, years, pos, cand_years, years_ok, window, n_known)
    # The members are made one analogue year at a time and summed in year order (what
    # np.nansum over the members does, bit for bit): memory linear in the record, not in
    # its square (the members of every year and month at once).
    members = np.full((n_c, n_t, *cells), np.nan) if return_members else None
    total = np.zeros((n_t, *cells))
    n_mem = np.zeros((n_t, *cells), np.int64)
    for m in range(12):
        tgt = np.flatnonzero((months == m + 1) & known_ok)
        if tgt.size == 0:
            continue
        m_pos = month_pos[m + 1]
        ty = years[tgt]
        for j in range(n_c):
            # A block never holds a month of the target's calendar year (leave-one-out).
            own = (block_years[0, j, m] <= ty) & (ty <= block_years[1, j, m])
            if not block_ok[j, m] or own.all():
                continue
            part = known_sum[tgt]
            if fill is not None:  # a missing observed month is drawn with the analogue block
                kn = known[tgt]
                filled = np.where(np.isnan(kn), fill[j, m][None], kn).sum(axis=1)
                part = np.where(np.isnan(part), filled, part)
            mean = (part + block_sum[j, m][None]) / window  # (tgt, *cells)
            z = spi_from_window_mean(mean, p_vals[m_pos], p0_all[m_pos])
            z[own] = np.nan
            if members is not None:
                members[j, tgt] = z
            ok = np.isfinite(z)
            total[tgt] += np.where(ok, z, 0.0)
            n_mem[tgt] += ok
    with np.errstate(invalid="ignore"):
        ens = np.where(n_mem > 0, total / np.maximum(n_mem, 1), np.nan)

    attrs = {
        "units": "1",
        "long_name": f"overlap-aware analogue (ESP) forecast of SPI-{window}",
        "forecast": "overlap_analogue",
        "lead_months": lead,
        "window_months": window,
        "observed_months": n_known,
        "analogue_years": f"{cand_years.min()}-{cand_years.max()} minus the target year",
        "clipping": CLIPPING_POLICY,
    }
    out = xr.DataArray(ens, dims=pr.dims, coords=pr.coords, attrs=attrs, name=f"spi_{window}")
    out = out.transpose(*pr_monthly.dims)
    if not return_members:
        return out
    mem = xr.DataArray(
        members,  # (made: return_members)
        dims=("member", *pr.dims),
        coords={**pr.coords, "member": cand_years},
        attrs=attrs,
        name=f"spi_{window}",
    )
    return mem
