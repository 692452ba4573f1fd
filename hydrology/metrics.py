"""Per-cell forecast skill over time, and its summary across cells.

Every score is computed per cell over the time axis (axis 0 of a numpy array, or the
``time`` dimension of a DataArray) on the months where both observation and forecast are
finite, so sea cells (all NaN) give NaN and are ignored by :func:`summarize`. Scores are
reported, as in neuralhydrology, as the median and inter-quartile range across cells.

* NSE = 1 - sum (s - o)^2 / sum (o - mean(o))^2, with the observed mean of the test period
  in the denominator: a perfect forecast scores 1, the observed mean 0.
* KGE (Gupta et al. 2009) = 1 - sqrt((r - 1)^2 + (alpha - 1)^2 + (beta - 1)^2), alpha =
  sigma_s / sigma_o, beta = mu_s / mu_o. For a constant forecast r is undefined; it is set
  to 0 (no linear association) instead of NaN.
* KGE_nb ("no-bias-ratio") replaces (beta - 1)^2 by ((mu_s - mu_o) / sigma_o)^2: beta
  explodes when mu_o is near 0, which is the rule for standardised indices (SPI, SPEI,
  SSMI have mean ~0 by construction), while the normalised difference stays well defined.
* Events are "index < threshold" (drought); POD = hits / (hits + misses), FAR = false
  alarms / (hits + false alarms), CSI = hits / (hits + misses + false alarms); NaN when the
  denominator is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

ArrayLike = np.ndarray | xr.DataArray

DROUGHT_THRESHOLDS: tuple[float, ...] = (-1.0, -1.5)


def _pair(obs: ArrayLike, sim: ArrayLike) -> tuple[np.ndarray, np.ndarray, xr.DataArray | None]:
    """Both as float arrays with time first, plus a template for the per-cell result."""
    template = None
    if isinstance(obs, xr.DataArray):
        if isinstance(sim, xr.DataArray):
            obs, sim = xr.align(obs, sim, join="inner")
            sim = sim.transpose(*obs.dims)
        obs_t = obs.transpose("time", ...)
        template = obs_t.isel(time=0, drop=True)
        o = obs_t.values.astype(float)
        s = sim.transpose("time", ...).values if isinstance(sim, xr.DataArray) else sim
        s = np.asarray(s, dtype=float)
    else:
        o = np.asarray(obs, dtype=float)
        s = np.asarray(sim.values if isinstance(sim, xr.DataArray) else sim, dtype=float)
    if o.shape != s.shape:
        raise ValueError(f"obs shape {o.shape} != forecast shape {s.shape}")
    valid = np.isfinite(o) & np.isfinite(s)
    return np.where(valid, o, np.nan), np.where(valid, s, np.nan), template


def _wrap(values: np.ndarray, template: xr.DataArray | None, name: str) -> ArrayLike:
    if template is None:
        return values
    out = template.copy(data=values)
    out.attrs = {"long_name": name, "units": "1"}
    out.name = name
    return out


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (no warning) where nothing is finite."""
    n = np.sum(np.isfinite(x), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(x, axis=0) / n, np.nan)


def _moments(o: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    n = np.sum(np.isfinite(o), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mo = _nanmean(o)
        ms = _nanmean(s)
        so = np.sqrt(_nanmean((o - mo) ** 2))
        ss = np.sqrt(_nanmean((s - ms) ** 2))
        cov = _nanmean((o - mo) * (s - ms))
        r = np.where(ss > 0, cov / (so * ss), 0.0)
    few = n < 2
    moments = {"mo": mo, "ms": ms, "so": so, "ss": ss, "r": r}
    return {k: np.where(few, np.nan, v) for k, v in moments.items()}


def nse(obs: ArrayLike, sim: ArrayLike) -> ArrayLike:
    """Nash-Sutcliffe efficiency per cell.

    Args:
        obs: Observations, shape ``(time, *cells)`` (or DataArray with ``time``).
        sim: Forecasts, same shape.

    Returns:
        NSE, shape ``cells`` (DataArray if ``obs`` is one); NaN for cells with fewer than 2
        valid months or constant observations.
    """
    o, s, tpl = _pair(obs, sim)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.nansum((o - _nanmean(o)) ** 2, axis=0)
        val = 1.0 - np.nansum((s - o) ** 2, axis=0) / den
    val = np.where((np.sum(np.isfinite(o), axis=0) < 2) | (den == 0), np.nan, val)
    return _wrap(val, tpl, "nse")


def kge(obs: ArrayLike, sim: ArrayLike) -> ArrayLike:
    """Kling-Gupta efficiency (2009) per cell; r := 0 for a constant forecast.

    Args:
        obs: Observations, shape ``(time, *cells)``.
        sim: Forecasts, same shape.

    Returns:
        KGE, shape ``cells``. Ill-conditioned when the observed mean is near 0 (use
        :func:`kge_nb` for standardised indices).
    """
    o, s, tpl = _pair(obs, sim)
    m = _moments(o, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = m["ss"] / m["so"]
        beta = m["ms"] / m["mo"]
        val = 1.0 - np.sqrt((m["r"] - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2)
    return _wrap(val, tpl, "kge")


def kge_nb(obs: ArrayLike, sim: ArrayLike) -> ArrayLike:
    """KGE with a normalised bias term, for zero-mean indices.

    ``1 - sqrt((r - 1)^2 + (alpha - 1)^2 + ((mu_s - mu_o) / sigma_o)^2)``; equals KGE-2009's
    form except that the bias ratio is replaced by the bias in units of the observed standard
    deviation. r := 0 for a constant forecast.

    Args:
        obs: Observations, shape ``(time, *cells)``.
        sim: Forecasts, same shape.

    Returns:
        KGE_nb, shape ``cells``.
    """
    o, s, tpl = _pair(obs, sim)
    m = _moments(o, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = m["ss"] / m["so"]
        bias = (m["ms"] - m["mo"]) / m["so"]
        val = 1.0 - np.sqrt((m["r"] - 1) ** 2 + (alpha - 1) ** 2 + bias**2)
    return _wrap(val, tpl, "kge_nb")


def rmse(obs: ArrayLike, sim: ArrayLike) -> ArrayLike:
    """Root-mean-square error per cell, in the units of ``obs``.

    Args:
        obs: Observations, shape ``(time, *cells)``.
        sim: Forecasts, same shape.

    Returns:
        RMSE, shape ``cells``; NaN where no month is valid.
    """
    o, s, tpl = _pair(obs, sim)
    with np.errstate(invalid="ignore"):
        val = np.sqrt(_nanmean((s - o) ** 2))
    val = np.where(np.sum(np.isfinite(o), axis=0) < 1, np.nan, val)
    return _wrap(val, tpl, "rmse")


def contingency(
    obs: ArrayLike, pred: ArrayLike, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits, misses and false alarms per cell for the event ``index < threshold``.

    Args:
        obs: Observed index, shape ``(time, *cells)``.
        pred: Forecast index, same shape.
        threshold: Event threshold (e.g. -1 for moderate drought).

    Returns:
        ``(hits, misses, false_alarms)``, int arrays of shape ``cells``, over the months
        where both are finite.
    """
    o, s, _ = _pair(obs, pred)
    valid = np.isfinite(o)
    eo = valid & (o < threshold)
    es = valid & (s < threshold)
    return (
        np.sum(eo & es, axis=0),
        np.sum(eo & ~es, axis=0),
        np.sum(~eo & es, axis=0),
    )


def _scores(
    h: np.ndarray | int, m: np.ndarray | int, f: np.ndarray | int
) -> dict[str, np.ndarray]:
    h, m, f = (np.asarray(x, dtype=float) for x in (h, m, f))
    with np.errstate(invalid="ignore", divide="ignore"):
        pod = np.where(h + m > 0, h / (h + m), np.nan)
        far = np.where(h + f > 0, f / (h + f), np.nan)
        csi = np.where(h + m + f > 0, h / (h + m + f), np.nan)
    return {"pod": pod, "far": far, "csi": csi}


def pod_far_csi(
    obs: ArrayLike, pred: ArrayLike, threshold: float, pooled: bool = False
) -> dict[str, ArrayLike | float]:
    """Probability of detection, false-alarm ratio and critical success index.

    Args:
        obs: Observed index, shape ``(time, *cells)``.
        pred: Forecast index, same shape.
        threshold: Event is ``index < threshold``.
        pooled: If True, pool the contingency table over all cells and months and return
            floats; otherwise return per-cell arrays (DataArrays if ``obs`` is one).

    Returns:
        ``{"pod": ..., "far": ..., "csi": ...}``.
    """
    h, m, f = contingency(obs, pred, threshold)
    if pooled:
        return {k: float(v) for k, v in _scores(h.sum(), m.sum(), f.sum()).items()}
    _, _, tpl = _pair(obs, pred)
    return {k: _wrap(v, tpl, k) for k, v in _scores(h, m, f).items()}


def summarize(per_cell: ArrayLike) -> dict[str, float]:
    """Median and inter-quartile range across cells, ignoring NaN cells.

    Args:
        per_cell: Any-shaped per-cell scores.

    Returns:
        ``{"median", "q25", "q75", "n_cells"}``; NaN statistics when no cell is finite.
    """
    v = np.asarray(per_cell, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": np.nan, "q25": np.nan, "q75": np.nan, "n_cells": 0}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n_cells": int(v.size)}


CONTINUOUS: dict[str, Callable[[ArrayLike, ArrayLike], ArrayLike]] = {
    "nse": nse,
    "kge": kge,
    "kge_nb": kge_nb,
    "rmse": rmse,
}


def skill_table(
    obs: ArrayLike,
    forecasts: Mapping[str, Mapping[int, ArrayLike] | ArrayLike],
    leads: Sequence[int],
    thresholds: Sequence[float] = DROUGHT_THRESHOLDS,
) -> pd.DataFrame:
    """Tidy skill table: one row per method, lead and metric.

    Args:
        obs: Observed index at the verification times, shape ``(time, *cells)``.
        forecasts: Per method, either ``{lead: forecast}`` with each forecast shaped like
            ``obs`` and valid at the same verification times, or one array of shape
            ``(len(leads), time, *cells)`` in the order of ``leads``.
        leads: Lead times in months.
        thresholds: Drought thresholds for POD/FAR/CSI (event: index < threshold).

    Returns:
        DataFrame with columns ``method, lead, metric, median, q25, q75, n_cells, pooled``.
        Continuous metrics (nse, kge, kge_nb, rmse) give the across-cell median and IQR
        (``pooled`` NaN); event metrics (``pod@-1.0`` ...) give both the per-cell summary
        and the value pooled over all cells and months.
    """
    rows = []
    for method, fc in forecasts.items():
        for i, lead in enumerate(leads):
            sim = fc[lead] if isinstance(fc, Mapping) else fc[i]
            for metric, fn in CONTINUOUS.items():
                rows.append(
                    {"method": method, "lead": lead, "metric": metric}
                    | summarize(fn(obs, sim))
                    | {"pooled": np.nan}
                )
            for thr in thresholds:
                cell = pod_far_csi(obs, sim, thr)
                pool = pod_far_csi(obs, sim, thr, pooled=True)
                for k in ("pod", "far", "csi"):
                    rows.append(
                        {"method": method, "lead": lead, "metric": f"{k}@{thr:g}"}
                        | summarize(cell[k])
                        | {"pooled": pool[k]}
                    )
    return pd.DataFrame(rows)
