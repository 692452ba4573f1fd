"""The drought sample cube and its lazy datasets: indexing, leakage, droughts in val, NaNs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hydrology import features
from hydrology.dataset import (
    DEFAULT_SPLITS,
    DroughtCube,
    build_cube,
    check_splits,
    drought_months,
    subsample_cells,
)
from hydrology.features import Scaler, regional_mean
from hydrology.indices import CLIP
from hydrology.samples import CellDataset, TileDataset, masked_mse
from hydrology.synthetic import generate
from twins.errors import DataError

SPLITS = DEFAULT_SPLITS["tiny"]


@pytest.fixture(scope="module")
def tiny_ds():
    return generate("tiny")


@pytest.fixture(scope="module")
def cube(tiny_ds) -> DroughtCube:
    return build_cube(tiny_ds, SPLITS)


def test_lazy_sample_equals_direct_slice(cube: DroughtCube) -> None:
    ds = CellDataset(cube, "train", seq_len=12)
    for i in (0, 17, len(ds) - 1):
        (dyn, sta, base), tgt = ds[i]
        c, t = ds.locate(i)
        np.testing.assert_array_equal(dyn.numpy(), cube.dynamic[c, t - 11 : t + 1])
        np.testing.assert_array_equal(sta.numpy(), cube.static[c])
        np.testing.assert_array_equal(base.numpy(), cube.baseline[c, t])
        np.testing.assert_array_equal(tgt.numpy(), cube.target[c, t])
        # target j is the index at t + lead
        k = cube.leads[0]
        # the target is the observed index itself (float32 to float32): exact
        np.testing.assert_array_equal(tgt[0].numpy(), cube.obs[c, t + k, 0])
    assert dyn.shape == (12, len(cube.meta["dynamic_features"]))
    assert tgt.shape == (len(cube.targets) * len(cube.leads),)


def test_batched_fetch_equals_collated_samples(cube: DroughtCube) -> None:
    """__getitems__ (one gather per field) == default_collate of the samples, bit for bit,
    also through a Subset of a cell subsample and a DataLoader with the trainer's collate."""
    from torch.utils.data import DataLoader, Subset, default_collate

    from twins.train.batching import collate

    ds = CellDataset(cube, "val", seq_len=12, cell_pos=subsample_cells(cube, 2, offset=1))
    idx = [len(ds) - 1, 0, 5, 5, 17]
    ref = default_collate([ds[i] for i in idx])
    got = collate(ds.__getitems__(idx))
    leaves = torch.utils._pytree.tree_leaves
    for a, b in zip(leaves(got), leaves(ref), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    sub = Subset(ds, [3, 1, 4, 1, 5])
    (dyn, sta, base), tgt = next(iter(DataLoader(sub, batch_size=5, collate_fn=collate)))
    (rdyn, rsta, rbase), rtgt = default_collate([ds[i] for i in (3, 1, 4, 1, 5)])
    assert torch.equal(dyn, rdyn) and torch.equal(sta, rsta) and torch.equal(base, rbase)
    torch.testing.assert_close(tgt, rtgt, rtol=0, atol=0, equal_nan=True)


def test_regional_mean_against_a_direct_weighted_sum() -> None:
    """Gaussian-weighted land mean == the explicit sum over land cells within 3 sigma."""
    rng = np.random.default_rng(3)
    shape, sigma = (7, 9), 1.5
    land = rng.random(shape[0] * shape[1]) < 0.7
    cells = np.flatnonzero(land)
    values = rng.normal(size=(4, cells.size))
    values[1, 3] = np.nan  # an unknown cell carries no weight
    got = regional_mean(values, cells, shape, sigma)
    r = int(3.0 * sigma + 0.5)  # scipy's truncate=3.0 window
    yy, xx = np.divmod(cells, shape[1])
    ref = np.empty_like(values)
    for t in range(values.shape[0]):
        for i in range(cells.size):
            dy, dx = yy - yy[i], xx - xx[i]
            w = np.exp(-(dy**2 + dx**2) / (2 * sigma**2)) * (abs(dy) <= r) * (abs(dx) <= r)
            ok = np.isfinite(values[t])
            ref[t, i] = np.sum(w[ok] * values[t, ok]) / np.sum(w[ok])
    # regional_mean works in float64 (a normalised weighted sum over <= 49 cells: a few
    # hundred u64 at most, as is the reference) and rounds to float32 once, which is at most
    # 2^-24 relative: rtol 2^-23 covers both; atol for means that cancel to near zero.
    np.testing.assert_allclose(got, ref, rtol=2.0**-23, atol=1e-12)
    const = regional_mean(np.full((2, cells.size), 0.4), cells, shape, 4.0)
    np.testing.assert_allclose(const, 0.4, rtol=2.0**-23)


def test_regional_mean_by_groups_of_months_equals_all_months_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Months are filtered one by one (no sigma across time): going through them in groups
    of 3 (the budget of 3 grids of 7 x 9 float64, and a last group of 2) changes no bit."""
    rng = np.random.default_rng(4)
    shape = (7, 9)
    cells = np.flatnonzero(rng.random(63) < 0.7)
    values = rng.normal(size=(11, cells.size))
    values[4, :5] = np.nan
    whole = regional_mean(values, cells, shape, 1.5)  # 4 MiB: every month in one group
    monkeypatch.setattr(features, "REGIONAL_SLAB_BYTES", 3 * 8 * 63)
    np.testing.assert_array_equal(regional_mean(values, cells, shape, 1.5), whole)


def test_split_targets_stay_inside_their_period(cube: DroughtCube) -> None:
    for name in ("train", "val", "test"):
        ds = CellDataset(cube, name, seq_len=12)
        a, b = cube.split_range(name)
        ts = [ds.locate(i)[1] for i in (0, len(ds) - 1)]
        assert ts[0] + 1 >= a and ts[1] + max(cube.leads) <= b


def test_targets_clipped_and_policy_recorded(cube: DroughtCube) -> None:
    t = cube.target[np.isfinite(cube.target)]
    assert t.min() >= -CLIP and t.max() <= CLIP
    assert "3.09" in cube.meta["clipping"]["indices"]
    assert np.abs(cube.dynamic[..., :4]).max() <= 5.0
    assert np.isfinite(cube.dynamic).all() and np.isfinite(cube.baseline).all()


def test_no_leakage_from_test_period(tiny_ds, cube: DroughtCube) -> None:
    """Perturbing the test period changes neither the index fit nor the scaler."""
    test_start = np.datetime64(SPLITS["test"][0] + "-01")
    late = tiny_ds.time.values >= test_start
    pert = tiny_ds.copy(deep=True)
    for v in ("tp", "t2m", "pev", "swvl1"):
        pert[v].values[late] *= 1.7
    other = build_cube(pert, SPLITS)
    np.testing.assert_array_equal(other.scaler.mean, cube.scaler.mean)
    np.testing.assert_array_equal(other.scaler.std, cube.scaler.std)
    for t in cube.spi_params:
        np.testing.assert_array_equal(other.spi_params[t]["gamma"], cube.spi_params[t]["gamma"])
    a, _ = cube.split_range("test")
    # train samples only touch months before the test period: identical
    tr, tr2 = CellDataset(cube, "train", 12), CellDataset(other, "train", 12)
    for i in (0, len(tr) // 2, len(tr) - 1):
        for x, y in zip(tr[i][0], tr2[i][0], strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)  # same inputs, same ops: exact
        torch.testing.assert_close(tr[i][1], tr2[i][1], rtol=0, atol=0, equal_nan=True)
    # while test-period inputs did change
    assert not np.allclose(other.dynamic[:, a:, 0], cube.dynamic[:, a:, 0])


def test_val_split_contains_droughts_and_dry_val_raises(tiny_ds, cube: DroughtCube) -> None:
    assert drought_months(cube, "val") > 0
    dry = {
        "train": ("2000-01", "2001-12"),
        "val": ("2002-01", "2003-12"),
        "test": ("2004-01", "2007-12"),
    }
    with pytest.raises(DataError, match="no drought"):
        build_cube(tiny_ds, dry)


def test_bad_splits_rejected(tiny_ds) -> None:
    with pytest.raises(DataError, match="time-ordered"):
        check_splits(
            {
                "train": ("2000-01", "2005-12"),
                "val": ("2005-01", "2005-12"),
                "test": ("2006-01", "2007-12"),
            }
        )
    with pytest.raises(DataError, match="outside the record"):
        build_cube(tiny_ds, {**SPLITS, "test": ("2006-01", "2009-12")})


def test_nan_targets_masked_and_all_nan_samples_dropped(cube: DroughtCube) -> None:
    pred = torch.zeros(4, 6)
    tgt = torch.ones(4, 6)
    tgt[0, :3] = float("nan")
    assert masked_mse(pred, tgt).item() == 1.0  # a mean of ones: exact in float32
    tgt[:] = float("nan")
    assert masked_mse(pred, tgt).item() == 0.0
    ds = CellDataset(cube, "train", seq_len=12)
    assert all(torch.isfinite(ds[i][1]).any() for i in range(0, len(ds), 97))


def test_subsample_and_tiles(cube: DroughtCube) -> None:
    a, b = subsample_cells(cube, 2, 0), subsample_cells(cube, 2, 1)
    assert set(a).isdisjoint(b) and 0 < a.size < cube.cells.size
    tiles = TileDataset(cube, "train", seq_len=12, tile=6)
    (dyn, sta, base), tgt = tiles[0]
    assert dyn.shape == (12, len(cube.meta["dynamic_features"]), 6, 6)
    assert sta.shape[1:] == base.shape[1:] == tgt.shape[1:] == (6, 6)


def test_scaler_and_cube_round_trip(tmp_path, cube: DroughtCube) -> None:
    # (ModelForecaster.save stores the arrays as tensors; the twin tests load such files)
    s = Scaler.from_state(cube.scaler.state())
    np.testing.assert_array_equal(s.mean, cube.scaler.mean)
    np.testing.assert_array_equal(s.std, cube.scaler.std)
    assert s.variables == cube.scaler.variables and s.clip == cube.scaler.clip
    back = DroughtCube.load(cube.save(tmp_path / "cube.npz"))
    np.testing.assert_array_equal(back.target, cube.target)
    assert back.meta == cube.meta and back.times.equals(cube.times)
