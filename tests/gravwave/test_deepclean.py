"""DeepClean autoencoder: shapes, receptive field, and learning a bilinear coupling."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch
from scipy import signal

from gravwave.losses import ASDRatioLoss
from gravwave.models import DeepClean, WienerFilter
from gravwave.preprocess import Standardizer, bandpass

log = logging.getLogger(__name__)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("widths", [(8, 16, 32, 64), (4, 8)])
def test_shapes(widths: tuple[int, ...]) -> None:
    model = DeepClean(5, widths=widths, dilations=(1, 2))
    x = torch.randn(3, 5, 64 * model.total_stride)
    assert model(x).shape == (3, 64 * model.total_stride)
    assert model.total_stride == 2 ** len(widths)


def test_bad_inputs_raise_clear_errors() -> None:
    model = DeepClean(4)
    with pytest.raises(ValueError, match="divisible by the total stride 16"):
        model(torch.randn(2, 4, 1000))
    with pytest.raises(ValueError, match=r"\(batch, 4, time\)"):
        model(torch.randn(2, 3, 1024))
    with pytest.raises(ValueError, match="odd"):
        DeepClean(4, kernel_size=6)
    with pytest.raises(ValueError, match="dilations"):
        DeepClean(4, dilations=(0,))


def test_parameter_counts() -> None:
    # The plain DeepClean layout for 21 witnesses has 43 873 parameters (as in the papers'
    # description); the default dilated bottleneck adds about 84 k.
    assert _n_params(DeepClean(21, dilations=())) == 43_873
    assert _n_params(DeepClean(21)) == 127_713
    assert 10_000 < _n_params(DeepClean(3)) < 500_000


def test_receptive_field_figures() -> None:
    plain = DeepClean(21, dilations=())
    assert plain.receptive_field() == (96, 96)  # +/-23 ms at 4096 Hz
    assert plain.receptive_field_s(4096.0) == pytest.approx(0.0234375)
    # each residual block adds (3 - 1) / 2 * dilation * 16 samples per side
    assert DeepClean(21).receptive_field() == (96 + 16 * 31, 96 + 16 * 31)  # +/-145 ms
    assert DeepClean(2, dilations=(1, 2, 4, 8)).receptive_field_s(4096.0) == pytest.approx(
        336 / 4096
    )


@pytest.mark.parametrize(
    "kwargs", [{"dilations": (1, 2, 4)}, {"dilations": (), "widths": (4, 8, 8), "kernel_size": 5}]
)
def test_receptive_field_matches_gradient(kwargs: dict) -> None:
    """The input samples with a non-zero gradient are exactly the claimed window."""
    model = DeepClean(3, **kwargs).double().eval()
    past, future = model.receptive_field()
    x = torch.randn(1, 3, 4 * (past + future) + 64 * model.total_stride, dtype=torch.float64)
    x.requires_grad_(True)
    y = model(x)
    base = x.shape[-1] // 2
    seen_past = seen_future = 0
    for n in range(base, base + model.total_stride):  # every phase of the strides
        (grad,) = torch.autograd.grad(y[0, n], x, retain_graph=True)
        nonzero = torch.nonzero(grad[0].abs().sum(dim=0)).squeeze(1)
        lo, hi = int(nonzero.min()), int(nonzero.max())
        assert nonzero.numel() == hi - lo + 1  # contiguous
        seen_past, seen_future = max(seen_past, n - lo), max(seen_future, hi - n)
    assert (seen_past, seen_future) == (past, future)


def test_moves_with_to_and_state_round_trips() -> None:
    model = DeepClean(2, dilations=(1, 2))
    model.train()
    model(torch.randn(4, 2, 256))  # update BatchNorm running statistics (buffers)
    model = model.to(torch.float64).eval()
    assert all(b.dtype == torch.float64 for b in model.buffers() if b.is_floating_point())
    x = torch.randn(1, 2, 256, dtype=torch.float64)
    again = DeepClean(2, dilations=(1, 2)).double().eval()
    again.load_state_dict(model.state_dict(), strict=True)
    # the same float64 weights through the same operations: exact
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def _bilinear_data(
    fs: float, seconds: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """A 40 Hz 'mains' witness modulated by a slow 0.5-4 Hz 'angular' witness.

    The strain noise is band-passed (mains x angular): sidebands at 40 +/- (0.5-4) Hz,
    where the mains witness has no power, so no linear filter can predict them. A white
    distractor witness and a little in-band sensing noise (floor ~0.06) complete it.
    """
    rng = np.random.default_rng(seed)
    n = int(fs * seconds)
    t = np.arange(n) / fs
    mains = np.sin(2 * np.pi * 40.0 * t + 0.3) + 0.01 * rng.standard_normal(n)
    angular = bandpass(rng.standard_normal(n), [(0.5, 4.0)], fs, order=4)
    angular /= angular.std()
    distractor = rng.standard_normal(n)
    band = [(34.0, 46.0)]
    strain = bandpass(mains * angular, band, fs) + 0.05 * bandpass(
        rng.standard_normal(n), band, fs
    )
    return np.stack([mains, angular, distractor]), strain, band


def _windows(x: np.ndarray, y: np.ndarray, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    starts = range(0, y.size - length + 1, length)
    xs = np.stack([x[:, s : s + length] for s in starts])
    ys = np.stack([y[s : s + length] for s in starts])
    return torch.tensor(xs, dtype=torch.float32), torch.tensor(ys, dtype=torch.float32)


def test_learns_bilinear_coupling_a_wiener_filter_cannot() -> None:
    torch.manual_seed(0)
    fs, n_train, window, steps = 256.0, int(256 * 180), 1024, 300
    witnesses, strain, band = _bilinear_data(fs, 240.0)
    scaler = Standardizer().fit(witnesses[:, :n_train])
    x = scaler.transform(witnesses)
    y = strain / strain[:n_train].std()  # band-passed target rescaled to unit variance
    loss = ASDRatioLoss(fs, band, fftlength=1.0, overlap=0.5, average="mean")
    x_test, y_test = _windows(x[:, n_train:], y[n_train:], window)

    wiener = WienerFilter(64, fs, bands=band).fit(witnesses[:, :n_train], y[:n_train])
    _, wiener_pred = _windows(x[:, n_train:], wiener.predict(witnesses[:, n_train:]), window)
    wiener_asdr = loss(wiener_pred, y_test).item()

    model = DeepClean(3, dilations=(1, 2, 4, 8))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    x_train = torch.tensor(x[:, :n_train], dtype=torch.float32)
    y_train = torch.tensor(y[:n_train], dtype=torch.float32)
    start = time.perf_counter()
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, n_train - window, (16,)).tolist()
        batch = (
            torch.stack([x_train[:, s : s + window] for s in starts]),
            torch.stack([y_train[s : s + window] for s in starts]),
        )
        value = loss.batch_loss(model, batch)
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        deepclean_asdr = loss(model(x_test), y_test).item()
    log.info(
        "bilinear test ASD ratio: DeepClean %.3f, Wiener %.3f (%d steps in %.1f s)",
        deepclean_asdr,
        wiener_asdr,
        steps,
        time.perf_counter() - start,
    )
    assert wiener_asdr > 0.9  # linear filtering cannot reach the sidebands
    assert deepclean_asdr < 0.4 and deepclean_asdr < 0.5 * wiener_asdr


def _train(
    model: DeepClean,
    loss: ASDRatioLoss,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    window: int,
    lr: float = 3e-3,
) -> None:
    """Plain Adam loop on random windows of standardised witnesses ``x`` and target ``y``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    x_t = torch.tensor(x, dtype=torch.float32)
    y_t = torch.tensor(y, dtype=torch.float32)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, y.size - window, (16,)).tolist()
        batch = (
            torch.stack([x_t[:, s : s + window] for s in starts]),
            torch.stack([y_t[s : s + window] for s in starts]),
        )
        value = loss.batch_loss(model, batch)
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
    model.eval()


@pytest.mark.slow
def test_cascade_wiener_then_deepclean() -> None:
    """Wiener removes a linear 100-120 Hz coupling, DeepClean the bilinear one left over."""
    torch.manual_seed(0)
    fs, n_train, window = 256.0, int(256 * 180), 1024
    witnesses, bilinear, _ = _bilinear_data(fs, 240.0, seed=1)
    rng = np.random.default_rng(7)
    jitter = rng.standard_normal(witnesses.shape[1])
    resonance = signal.butter(3, [104.0, 116.0], btype="bandpass", output="sos", fs=fs)
    bands = [(34.0, 46.0), (100.0, 120.0)]
    linear = signal.sosfilt(resonance, jitter)  # causal, ~100 ms ring-down
    strain = bilinear + bandpass(linear, bands, fs) * bilinear.std() / linear.std()
    witnesses = np.concatenate([witnesses, jitter[None]])
    y = strain / strain[:n_train].std()
    low = ASDRatioLoss(fs, bands[:1], fftlength=1.0, overlap=0.5, average="mean")
    high = ASDRatioLoss(fs, bands[1:], fftlength=1.0, overlap=0.5, average="mean")

    wiener = WienerFilter(96, fs, bands=bands).fit(witnesses[:, :n_train], y[:n_train])
    wiener_pred = wiener.predict(witnesses)
    # DeepClean learns what is left in the band with non-linear coupling (the hybrid of
    # reference/feasibility-gravwave.md), on a unit-variance band-passed residual.
    residual = bandpass(y - wiener_pred, bands[:1], fs)
    res_scale = residual[:n_train].std()
    scaler = Standardizer().fit(witnesses[:, :n_train])
    x = scaler.transform(witnesses)
    model = DeepClean(4, dilations=(1, 2, 4, 8))
    _train(model, low, x[:, :n_train], residual[:n_train] / res_scale, 300, window)
    with torch.no_grad():  # the whole 60-s test span at once (15360 samples = 960 * 16)
        dc_pred = model(torch.tensor(x[None, :, n_train:], dtype=torch.float32))[0].numpy()
    cascade_pred = wiener_pred[n_train:] + res_scale * bandpass(dc_pred, bands[:1], fs)

    _, y_test = _windows(x[:, n_train:], y[n_train:], window)
    _, wiener_test = _windows(x[:, n_train:], wiener_pred[n_train:], window)
    _, cascade = _windows(x[:, n_train:], cascade_pred, window)
    ratios = {
        "wiener": (low(wiener_test, y_test).item(), high(wiener_test, y_test).item()),
        "cascade": (low(cascade, y_test).item(), high(cascade, y_test).item()),
    }
    log.info("cascade test ASD ratios (34-46 Hz, 100-120 Hz): %s", ratios)
    assert ratios["wiener"][0] > 0.9 and ratios["wiener"][1] < 0.2
    assert ratios["cascade"][0] < 0.4 and ratios["cascade"][1] < 0.25
