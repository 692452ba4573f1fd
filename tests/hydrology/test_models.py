"""Forecast models: shapes, residual start, and that each can learn a known mapping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hydrology.models import CellLSTM, ConvLSTMForecaster


def test_cell_lstm_shapes_and_residual_starts_at_baseline() -> None:
    dyn, sta = torch.randn(5, 12, 4), torch.randn(5, 2)
    assert CellLSTM(4, 2, 6)(dyn, sta).shape == (5, 6)
    res = CellLSTM(4, 2, 6, residual=True)
    base = torch.randn(5, 6)
    # the correction head starts at zero: base + 0 is exact
    torch.testing.assert_close(res(dyn, sta, base), base, rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs a baseline"):
        res(dyn, sta)


def test_cell_lstm_seed_ensemble_members_and_mean() -> None:
    from hydrology.models.ensemble import PerOutputSelect, load_selected

    dyn, sta, base = torch.randn(5, 12, 4), torch.randn(5, 2), torch.randn(5, 6)
    torch.manual_seed(0)
    ens = CellLSTM(4, 2, 6, dropout=0.0, residual=True, members=3, skip=True)
    # starts at the baseline: the mean of 3 copies of it, (b + b + b) / 3, is two float32
    # roundings away from b: <= 2 ulp = 2^-22 relative
    torch.testing.assert_close(ens.eval()(dyn, sta, base), base, rtol=2.0**-22, atol=0)
    for m in ens.nets:  # give the members distinct corrections
        nn.init.normal_(m.head.weight)
        nn.init.normal_(m.skip.weight)
    ens.train()
    every = ens(dyn, sta, base)
    assert every.shape == (5, 6, 3)  # one forecast per member while training
    ens.eval()
    # the same members (dropout 0 is the identity); only the mean of 3 may be summed in
    # another order: <= 2 float32 roundings of the largest member, 2^-22 |x|max
    bound = 2.0**-22 * float(every.detach().abs().max())
    torch.testing.assert_close(ens(dyn, sta, base), every.mean(-1), rtol=0, atol=bound)
    with torch.no_grad():
        ens.train()
        assert ens(dyn, sta, base).shape == (5, 6)  # no gradients: the mean
    # a wrapper rebuilt from the single-network architecture loads the ensemble
    state = PerOutputSelect(ens, 6).state_dict()
    fresh = load_selected(PerOutputSelect(CellLSTM(4, 2, 6, dropout=0.0, residual=True), 6), state)
    fresh.eval()
    ens.eval()
    # the same weights through the same operations: exact
    torch.testing.assert_close(fresh(dyn, sta, base), ens(dyn, sta, base), rtol=0, atol=0)


def test_cell_lstm_learns_a_lagged_sum() -> None:
    # target = mean of the last 3 months of feature 0 + static offset: needs memory and statics
    g = torch.Generator().manual_seed(0)
    dyn, sta = torch.randn(512, 12, 3, generator=g), torch.randn(512, 1, generator=g)
    y = dyn[:, -3:, 0].mean(1, keepdim=True) + 0.5 * sta
    model = CellLSTM(3, 1, 1, hidden=32, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = nn.functional.mse_loss(model(dyn, sta), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * y.var().item()


def test_convlstm_shapes_and_learns_a_spatial_shift() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, 2, 8, 8, generator=g)
    model = ConvLSTMForecaster(2, 3, hidden=8)
    assert model(x).shape == (32, 3, 8, 8)
    # target: last map of channel 0 shifted one cell east (needs the spatial kernel)
    y = torch.roll(x[:, -1, :1], shifts=1, dims=-1)
    model = ConvLSTMForecaster(2, 1, hidden=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.mse_loss(model(x)[..., 1:-1, 1:-1], y[..., 1:-1, 1:-1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * y.var().item()
    with pytest.raises(ValueError, match="odd"):
        ConvLSTMForecaster(2, 1, kernel=2)
