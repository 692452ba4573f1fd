"""Skill of a trained drought forecaster beside persistence, climatology and the analogue.

Every forecast is scored per cell over the verification months of a split (the test
period by default): the forecast at month T with lead k is the one issued at T - k. Scores
are summarised as median and IQR across land cells (:func:`hydrology.metrics.skill_table`):
NSE, KGE, KGE_nb, RMSE and POD/FAR/CSI at SPI < -1 and < -1.5 (per cell and pooled).

Baselines: ``persistence`` (index at the issue month), ``climatology`` (0, the calibration
mean of a standardised index) and ``analogue`` (the overlap-aware analogue / ESP forecast,
defined for SPI targets only; for the soil-moisture index the best simple baseline is
climatology).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from hydrology.dataset import DroughtCube
from hydrology.metrics import nse, rmse, skill_table

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("model", "persistence", "climatology", "analogue")


@torch.no_grad()
def predict(
    model: nn.Module,
    cube: DroughtCube,
    issue: np.ndarray,
    seq_len: int,
    kind: str = "lstm",
    batch_size: int = 8192,
) -> np.ndarray:
    """Model forecasts issued at given months, for every land cell.

    Args:
        model: Trained model (``(dynamic, static, baseline) -> (batch, n_out[, H, W])``).
        cube: The sample cube.
        issue: Issue time indices, each ``>= seq_len - 1``.
        seq_len: Months of input history.
        kind: ``"lstm"`` (per cell) or ``"convlstm"`` (whole grid as one tile).
        batch_size: Cells per forward pass (LSTM).

    Returns:
        ``(cell, len(issue), n_out)`` float32 forecasts.
    """
    model.eval()
    n_c, n_out = cube.cells.size, cube.baseline.shape[-1]
    out = np.full((n_c, issue.size, n_out), np.nan, np.float32)
    dyn = torch.from_numpy(cube.dynamic)
    sta = torch.from_numpy(cube.static)
    base = torch.from_numpy(cube.baseline)
    if kind == "convlstm":
        g = cube.grid
        gd = torch.from_numpy(np.nan_to_num(g(cube.dynamic.transpose(1, 2, 0))))
        gs = torch.from_numpy(np.nan_to_num(g(cube.static.T)))[None]
        gb = torch.from_numpy(np.nan_to_num(g(cube.baseline.transpose(1, 2, 0))))
        for j, t in enumerate(issue):
            y = model(gd[None, t - seq_len + 1 : t + 1], gs, gb[t : t + 1])[0]
            out[:, j] = y.reshape(n_out, -1)[:, cube.cells].T.numpy()
        return out
    for j, t in enumerate(issue):
        for s in range(0, n_c, batch_size):
            c = slice(s, min(s + batch_size, n_c))
            y = model(dyn[c, t - seq_len + 1 : t + 1], sta[c], base[c, t])
            out[c, j] = y.numpy()
    return out


def verification_forecasts(
    cube: DroughtCube, pred_issue: np.ndarray | None, issue: np.ndarray, split: str
) -> tuple[np.ndarray, dict[str, dict[str, dict[int, np.ndarray]]]]:
    """Observations and forecasts of every method on a split's verification months.

    Args:
        cube: The sample cube.
        pred_issue: Model forecasts ``(cell, len(issue), n_out)`` (or None: baselines only).
        issue: Issue time indices of ``pred_issue``.
        split: Split whose months are verified.

    Returns:
        ``(verif, {target: {method: {lead: (time, cell) array}}})`` where ``verif`` are the
        verification time indices; obs per target is under method ``"obs"``, lead 0.
    """
    a, b = cube.split_range(split)
    verif = np.arange(a, b + 1)
    pos = {int(t): j for j, t in enumerate(issue)}
    out: dict[str, dict[str, dict[int, np.ndarray]]] = {}
    n_l = len(cube.leads)
    for i, tgt in enumerate(cube.targets):
        d: dict[str, dict[int, np.ndarray]] = {m: {} for m in METHODS}
        d["obs"] = {0: cube.obs[:, verif, i].T}
        for j, k in enumerate(cube.leads):
            o = i * n_l + j
            src = verif - k
            ok = src >= 0
            srcc = np.where(ok, src, 0)
            nanrow = ~ok[:, None]
            d["persistence"][k] = np.where(nanrow, np.nan, cube.obs[:, srcc, i].T)
            d["climatology"][k] = np.zeros_like(d["obs"][0])
            if tgt.startswith("spi"):
                d["analogue"][k] = np.where(nanrow, np.nan, cube.baseline[:, srcc, o].T)
            if pred_issue is not None:
                m = np.full_like(d["obs"][0], np.nan)
                for r, t in enumerate(src):
                    if int(t) in pos:
                        m[r] = pred_issue[:, pos[int(t)], o]
                d["model"][k] = m
        out[tgt] = {m: v for m, v in d.items() if v}
    return verif, out


def issue_months(cube: DroughtCube, split: str, seq_len: int) -> np.ndarray:
    """Issue time indices needed to verify every lead over a split."""
    a, b = cube.split_range(split)
    lo = max(a - max(cube.leads), seq_len - 1)
    return np.arange(lo, b)


def skill(cube: DroughtCube, fc: dict[str, dict[str, dict[int, np.ndarray]]]) -> pd.DataFrame:
    """Skill table of every target (column ``target`` added to :func:`skill_table`)."""
    frames = []
    for tgt, d in fc.items():
        obs = d["obs"][0]
        methods = {m: v for m, v in d.items() if m != "obs"}
        df = skill_table(obs, methods, cube.leads)
        df.insert(0, "target", tgt)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _grid_da(cube: DroughtCube, values: np.ndarray, name: str) -> xr.DataArray:
    """``(cell,)`` -> DataArray ``(lat, lon)``."""
    return xr.DataArray(
        cube.grid(values),
        dims=("lat", "lon"),
        coords={"lat": cube.lat, "lon": cube.lon},
        name=name,
        attrs={"long_name": name, "units": "1"},
    )


def figures(
    cube: DroughtCube,
    fc: dict[str, dict[str, dict[int, np.ndarray]]],
    verif: np.ndarray,
    out_dir: str | Path,
) -> list[Path]:
    """Skill maps (RMSE, NSE, RMSE gain over the best baseline) and drought maps as PNG.

    Returns:
        Paths of the written figures.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hydrology.plots import drought_map, skill_map

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def save(fig: Any, name: str) -> None:
        p = out / name
        fig.savefig(p, dpi=90, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)

    lead = cube.leads[0]
    for tgt, d in fc.items():
        if "model" not in d:
            continue
        obs, sim = d["obs"][0], d["model"][lead]
        r = _grid_da(cube, np.asarray(rmse(obs, sim)), f"RMSE {tgt}")
        save(
            skill_map(r, f"{tgt} lead {lead}: model RMSE", cmap="viridis"),
            f"rmse_{tgt}_l{lead}.png",
        )
        e = _grid_da(cube, np.asarray(nse(obs, sim)), f"NSE {tgt}")
        save(
            skill_map(e, f"{tgt} lead {lead}: model NSE", vmin=-1, vmax=1),
            f"nse_{tgt}_l{lead}.png",
        )
        ref = "analogue" if "analogue" in d else "climatology"
        gain = np.asarray(rmse(obs, sim)) - np.asarray(rmse(obs, d[ref][lead]))
        g = _grid_da(cube, gain, f"RMSE model - {ref}")
        save(
            skill_map(
                g, f"{tgt} lead {lead}: RMSE model - {ref}", vmin=-0.3, vmax=0.3, cmap="RdBu"
            ),
            f"gain_{tgt}_l{lead}.png",
        )
    tgt = cube.targets[0]
    share = cube.drought_share[verif]
    r = int(np.argmax(share))
    month = pd.Timestamp(cube.times[verif[r]]).strftime("%Y-%m")
    d = fc[tgt]
    save(
        drought_map(_grid_da(cube, d["obs"][0][r], tgt), title=f"observed {tgt} {month}"),
        f"drought_obs_{tgt}.png",
    )
    if "model" in d:
        save(
            drought_map(
                _grid_da(cube, d["model"][lead][r], tgt),
                title=f"model {tgt} lead {lead}, valid {month}",
            ),
            f"drought_model_{tgt}_l{lead}.png",
        )
    return paths


def evaluate_run(
    model: nn.Module | None,
    cube: DroughtCube,
    seq_len: int,
    kind: str = "lstm",
    split: str = "test",
    out_dir: str | Path | None = None,
    forecasts: np.ndarray | None = None,
) -> pd.DataFrame:
    """Skill table of a model beside the three baselines, and optional figures.

    Args:
        model: Trained model, or None for the baselines only.
        cube: The sample cube the model was trained on (or its months that the split's
            verification reads, :func:`hydrology.sharding.verification_window`).
        seq_len: Months of input history.
        kind: ``"lstm"`` or ``"convlstm"``.
        split: Split to verify (``"test"``).
        out_dir: Where to write PNG figures and ``skill.csv`` (nothing written if None).
        forecasts: The model's forecasts ``(cell, issue, output)`` at
            :func:`issue_months`, made elsewhere (e.g. chunk by chunk from a store, with
            ``cube`` then holding no inputs); None: :func:`predict` makes them.

    Returns:
        DataFrame ``target, method, lead, metric, median, q25, q75, n_cells, pooled``.
    """
    issue = issue_months(cube, split, seq_len)
    pred = forecasts
    if pred is None and model is not None:
        pred = predict(model, cube, issue, seq_len, kind)
    verif, fc = verification_forecasts(cube, pred, issue, split)
    table = skill(cube, fc)
    if out_dir is not None:
        figures(cube, fc, verif, out_dir)
        table.to_csv(Path(out_dir) / "skill.csv", index=False)
    return table


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """Median RMSE / NSE / KGE_nb and pooled CSI@-1 per target, lead and method (wide)."""
    cont = table[table.metric.isin(["rmse", "nse", "kge_nb"])]
    wide = cont.pivot_table(index=["target", "lead", "method"], columns="metric", values="median")
    csi = table[table.metric == "csi@-1"].set_index(["target", "lead", "method"])["pooled"]
    wide["csi@-1"] = csi
    return wide


def acceptance(table: pd.DataFrame) -> dict[str, tuple[float, float, bool]]:
    """The demo acceptance bars: ``{name: (value, bar, met)}``.

    Bars (median RMSE across cells, test period): SPI-3 lead 1 >= 20 % below persistence
    and >= 2 % below the analogue; lead 2 >= 3 % below the analogue; lead 3 >= 3 % below
    climatology; SSMI-1 lead 1 >= 4 % below climatology; pooled CSI (SPI-3 < -1) at lead 1
    >= 0.5 and >= persistence; median NSE of SPI-3 lead 1 >= 0.65.
    """
    h = headline(table)

    def v(t: str, k: int, m: str, metric: str) -> float:
        try:
            return float(h.loc[(t, k, m), metric])
        except KeyError:
            return float("nan")

    def rel(t: str, k: int, ref: str) -> float:
        return v(t, k, "model", "rmse") / v(t, k, ref, "rmse") - 1

    out = {
        "spi_3 l1 vs persistence": (rel("spi_3", 1, "persistence"), -0.20),
        "spi_3 l1 vs analogue": (rel("spi_3", 1, "analogue"), -0.02),
        "spi_3 l2 vs analogue": (rel("spi_3", 2, "analogue"), -0.03),
        "spi_3 l3 vs climatology": (rel("spi_3", 3, "climatology"), -0.03),
        "ssmi_1 l1 vs climatology": (rel("ssmi_1", 1, "climatology"), -0.04),
    }
    res = {k: (a, b, bool(a <= b)) for k, (a, b) in out.items()}
    csi, csi_p = v("spi_3", 1, "model", "csi@-1"), v("spi_3", 1, "persistence", "csi@-1")
    res["spi_3 l1 CSI@-1 >= 0.5"] = (csi, 0.5, bool(csi >= 0.5))
    res["spi_3 l1 CSI@-1 >= persistence"] = (csi, csi_p, bool(csi >= csi_p))
    n1 = v("spi_3", 1, "model", "nse")
    res["spi_3 l1 NSE >= 0.65"] = (n1, 0.65, bool(n1 >= 0.65))
    return res
