"""Welch PSD in torch against scipy, and the in-band ASD-ratio loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal

from gravwave.losses import ASDRatioLoss, median_bias, welch_psd

FS = 256.0

# Tolerances, relative to the mean PSD level (bins near zero, e.g. DC after detrending,
# make a purely relative test meaningless): float64 FFTs agree with scipy's to ~1e-15;
# float32 carries a rounding error of about eps * log2(n) ~ 1e-6 of the spectrum's RMS,
# and the median picks the same segment in both when no two segments tie.
TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("average", ["mean", "median"])
@pytest.mark.parametrize(
    ("nperseg", "noverlap", "window"),
    [(512, 256, "hann"), (500, 150, "hann"), (1024, 512, "hamming"), (256, 0, "hann")],
)
def test_welch_matches_scipy(
    dtype: torch.dtype, average: str, nperseg: int, noverlap: int, window: str
) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8 * 1024)) + np.sin(2 * np.pi * 30.0 * np.arange(8192) / FS)
    _, expected = signal.welch(
        x, fs=FS, window=window, nperseg=nperseg, noverlap=noverlap, average=average
    )
    got = welch_psd(
        torch.tensor(x, dtype=dtype), nperseg, noverlap, window, average, sample_rate=FS
    )
    assert got.dtype == dtype and got.shape == expected.shape
    scale = expected.mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(got.double().numpy() / scale, expected / scale, atol=TOL[dtype])


def test_median_bias_matches_scipy_and_segment_counts_cover_odd_and_even() -> None:
    # With identical segments the median equals the mean, so scipy's mean / median
    # ratio is exactly its bias correction.
    period = np.random.default_rng(3).standard_normal(64)
    for n in range(1, 20):
        x = np.tile(period, n)
        _, mean = signal.welch(x, nperseg=64, noverlap=0, average="mean")
        _, median = signal.welch(x, nperseg=64, noverlap=0, average="median")
        assert median_bias(n) == pytest.approx(np.median(mean[1:] / median[1:]), rel=1e-12)
    # The parametrised cases above average 31, 22, 15 and 32 segments: odd and even medians.
    assert {(8192 - ov) // (n - ov) % 2 for n, ov in [(512, 256), (500, 150)]} == {0, 1}


def test_welch_rejects_bad_arguments() -> None:
    x = torch.zeros(2, 100)
    with pytest.raises(ValueError, match="fewer"):
        welch_psd(x, 200, 100)
    with pytest.raises(ValueError, match="overlap"):
        welch_psd(x, 50, 50)
    with pytest.raises(ValueError, match="average"):
        welch_psd(x, 50, 25, average="max")


def _signals(batch: int = 4, seconds: float = 8.0) -> torch.Tensor:
    rng = np.random.default_rng(1)
    return torch.tensor(rng.standard_normal((batch, int(seconds * FS))))


def test_loss_is_one_for_zero_and_zero_for_perfect_prediction() -> None:
    loss = ASDRatioLoss(FS, [(20.0, 30.0), (60.0, 70.0)])
    target = _signals()
    assert loss(torch.zeros_like(target), target).item() == pytest.approx(1.0, abs=1e-9)
    assert loss(target, target).item() == pytest.approx(0.0, abs=2e-6)  # sqrt(eps) = 1e-6
    # Half the target in the prediction halves the residual amplitude everywhere.
    assert loss(0.5 * target, target).item() == pytest.approx(0.5, abs=1e-6)


def test_loss_is_differentiable_including_at_the_optimum() -> None:
    loss = ASDRatioLoss(FS, [(20.0, 30.0)], mse_weight=0.3)
    target = _signals().float()
    for pred0 in (torch.zeros_like(target), target.clone()):
        pred = pred0.clone().requires_grad_(True)
        loss(pred, target).backward()
        assert pred.grad is not None and torch.isfinite(pred.grad).all()
    pred = torch.zeros_like(target, requires_grad=True)
    loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    # gradient descent on the prediction lowers the loss
    with torch.no_grad():
        before = loss(pred, target)
        after = loss(pred - 10.0 * pred.grad, target)
    assert after < before


def test_loss_respects_band_mask() -> None:
    n = int(8 * FS)
    t = torch.arange(n, dtype=torch.float64) / FS
    rng = np.random.default_rng(2)
    noise = torch.tensor(rng.standard_normal((2, n)))
    line = torch.sin(2 * torch.pi * 25.0 * t)
    target = noise + 10.0 * line
    pred = 10.0 * line.expand(2, n)  # removes the 25 Hz line, nothing else
    in_band = ASDRatioLoss(FS, [(24.5, 25.6)], fftlength=2.0, overlap=1.0)
    away = ASDRatioLoss(FS, [(60.0, 90.0)], fftlength=2.0, overlap=1.0)
    assert in_band(pred, target).item() < 0.1
    assert away(pred, target).item() == pytest.approx(1.0, abs=1e-6)
    # The Hann main lobe of the line spans 24.5-25.5 Hz: a wider band would average in bins
    # where the target is noise only and the ratio is 1.
    np.testing.assert_allclose(in_band.frequencies, [24.5, 25.0, 25.5])
    assert in_band.mask.dtype == torch.bool and int(in_band.mask.sum()) == 3
    wider = ASDRatioLoss(FS, [(23.0, 27.0)], fftlength=2.0, overlap=1.0)
    assert wider(pred, target).item() == pytest.approx(
        (5 + 3 * in_band(pred, target).item()) / 8, abs=0.03
    )
    both = ASDRatioLoss(FS, [(24.5, 25.6), (60.0, 90.0)])
    assert int(both.mask.sum()) == 3 + 60


def test_batch_loss_form_and_errors() -> None:
    loss = ASDRatioLoss(FS, [(20.0, 30.0)], fftlength=1.0, overlap=0.5)
    model = torch.nn.Conv1d(2, 1, 1)
    witnesses = torch.randn(3, 2, 512)
    target = torch.randn(3, 512)
    value = loss.batch_loss(lambda w: model(w).squeeze(1), (witnesses, target))
    assert value.ndim == 0 and torch.isfinite(value)
    with pytest.raises(ValueError, match="batch, time"):
        loss(torch.zeros(3, 512), torch.zeros(3, 256))
    with pytest.raises(ValueError, match="no frequency bin"):
        ASDRatioLoss(FS, [(20.2, 20.8)], fftlength=1.0, overlap=0.5)
    with pytest.raises(ValueError, match="mse_weight"):
        ASDRatioLoss(FS, [(20.0, 30.0)], mse_weight=2.0)
