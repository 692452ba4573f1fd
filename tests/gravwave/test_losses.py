"""Welch PSD in torch against scipy, and the in-band ASD-ratio loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from gravwave.losses import ASDRatioLoss, median_bias, welch_psd

FS = 256.0


def welch_error_bound(
    x: np.ndarray, nperseg: int, noverlap: int, window: str, u: float
) -> np.ndarray:
    """Worst-case rounding error of :func:`welch_psd` (mean or median) per frequency bin.

    Derived, for a computation in a floating-point type of unit roundoff ``u`` on the input
    ``x`` exactly as given (``(batch, time)`` float64 holding values of that type). With
    ``n = nperseg``, ``L = ceil(log2 n)``, ``x_s`` a segment, ``y_s = (x_s - mean) * w``
    (``|w| <= 1``) and ``Y_s = rfft(y_s)``:

    1. detrend and window: the pairwise mean is off by ``<= L u mean|x_s|``, the subtraction
       and the product add one rounding each, so ``||dy_s||_2 <= (L + 2) u ||x_s||_2``
       (``mean|x_s| sqrt(n) <= ||x_s||_2``, Cauchy-Schwarz);
    2. FFT: Higham, *Accuracy and Stability of Numerical Algorithms* (2002), Thm 24.2:
       ``||dY||_2 <= L eta ||Y||_2`` with ``eta = mu + gamma_4 (sqrt 2 + mu) ~ 6.7 u`` for
       radix 2 with twiddles accurate to ``mu ~ u``; mixed-radix and split-radix kernels
       (MKL, pocketfft, cuFFT; n = 500 = 4 * 5^3) have the same form with a comparable
       per-stage constant: we take ``8 u`` per stage. The DFT is ``sqrt(n)`` times a unitary
       map, so with step 1 every bin obeys ``|dY_sk| <= delta_s = (9 L + 2) u sqrt(n)
       ||x_s||_2`` (the whole error norm is allowed into one bin: no statistical model);
    3. ``|Y|^2 = re^2 + im^2``: ``2 |Y_sk| delta_s + delta_s^2`` plus two roundings;
    4. density scale (``sum w^2`` pairwise, one division, two products): ``(L + 4) u``
       relative; averaging: a mean of ``m`` segments ``m u`` relative; the median selects
       without rounding (plus one add and a halving for even ``m``), and an order statistic
       is 1-Lipschitz in the max norm, so segments that nearly tie and swap places move the
       median by no more than the largest per-segment error: ties need no special care;
       the division by the median bias: one more rounding.

    Both averages are therefore within ``max_s c_k (2 |Y_sk| delta_s + delta_s^2 + (L + m
    + 9) u |Y_sk|^2)`` of the exact result, ``c_k`` the density scale of bin ``k``.

    Returns:
        ``(batch, nperseg // 2 + 1)`` bound in PSD units (``unit**2 / Hz``).
    """
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=-1)[
        ..., :: nperseg - noverlap, :
    ]  # (batch, m, n): the segments welch_psd and scipy use
    m, n_bits = segs.shape[-2], int(np.ceil(np.log2(nperseg)))
    w = signal.get_window(window, nperseg)
    abs_y = np.abs(np.fft.rfft((segs - segs.mean(-1, keepdims=True)) * w, axis=-1))
    scale = np.full(abs_y.shape[-1], 2.0)
    scale[0] = 1.0
    if nperseg % 2 == 0:
        scale[-1] = 1.0
    c = scale / (FS * np.square(w).sum())
    delta = (9 * n_bits + 2) * u * np.sqrt(nperseg) * np.linalg.norm(segs, axis=-1)[..., None]
    per_segment = c * (2 * abs_y * delta + delta**2 + (n_bits + m + 9) * u * abs_y**2)
    return per_segment.max(axis=-2)


UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("average", ["mean", "median"])
@pytest.mark.parametrize(
    ("nperseg", "noverlap", "window"),
    [(512, 256, "hann"), (500, 150, "hann"), (1024, 512, "hamming"), (256, 0, "hann")],
)
def test_welch_matches_scipy(
    dtype: torch.dtype, average: str, nperseg: int, noverlap: int, window: str
) -> None:
    """Agreement with scipy within a derived rounding bound, on any FFT backend.

    scipy runs in float64 on the *same* ``dtype``-rounded input (rounding the input changes
    the problem, not the algorithm), and both results are within their
    :func:`welch_error_bound` of the exact Welch estimate of that input, so they differ by at
    most the sum of the two bounds. The bound is a worst case (every FFT error in one bin):
    on this CPU the errors use under 1 % of it, and a tolerance set on one CPU (the former
    ``2e-5`` of the mean PSD, which another CPU's FFT exceeded with ``3.8e-5`` at the 30-Hz
    line) is not needed. A real defect (window, scaling, segmenting, median bias) gives
    errors of order one, far above it: a line 200x above the noise floor bounds the error
    at under 1 % of the mean PSD.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8 * 1024)) + np.sin(2 * np.pi * 30.0 * np.arange(8192) / FS)
    xt = torch.tensor(x, dtype=dtype)
    x_in = xt.double().numpy()  # exactly the values welch_psd sees
    _, expected = signal.welch(
        x_in, fs=FS, window=window, nperseg=nperseg, noverlap=noverlap, average=average
    )
    got = welch_psd(xt, nperseg, noverlap, window, average, sample_rate=FS)
    assert got.dtype == dtype and got.shape == expected.shape
    bound = welch_error_bound(x_in, nperseg, noverlap, window, UNIT_ROUNDOFF[dtype])
    bound += welch_error_bound(x_in, nperseg, noverlap, window, UNIT_ROUNDOFF[torch.float64])
    err = np.abs(got.double().numpy() - expected)
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert (err <= bound).all(), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"
    # and the bound is tight enough to mean something: under 1 % of the mean PSD level
    assert (bound < 0.01 * expected.mean(axis=-1, keepdims=True)).all()


def test_median_bias_matches_scipy_and_segment_counts_cover_odd_and_even() -> None:
    # With identical segments the median equals the mean, so scipy's mean / median
    # ratio is exactly its bias correction.
    period = np.random.default_rng(3).standard_normal(64)
    for n in range(1, 20):
        x = np.tile(period, n)
        _, mean = signal.welch(x, nperseg=64, noverlap=0, average="mean")
        _, median = signal.welch(x, nperseg=64, noverlap=0, average="median")
        # bitwise-equal segments: scipy's mean of n equal values (<= n u64), an exact median,
        # our bias (<= (n + 1) / 2 terms) and two divisions: <= (2 n + 4) u64 < 5e-15
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
    target = _signals()  # float64
    # Each case makes every PSD ratio exact: the residual is the target (ratio 1), zero
    # (ratio 0), or half the target (t - t/2 is exact by Sterbenz's lemma, and scaling by a
    # power of two commutes with every rounding of the Welch estimate: ratio 1/4). What is
    # left is sqrt(ratio + eps) and a mean of ~100 equal values: a few u64 (1.1e-16)
    # relative, so rel=1e-14.
    exact = {1.0: torch.zeros_like(target), 0.0: target, 0.25: 0.5 * target}
    for ratio, pred in exact.items():
        expected = math.sqrt(ratio + loss.eps)
        assert loss(pred, target).item() == pytest.approx(expected, rel=1e-14), ratio


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
    # 25 Hz x 2 s is 50 whole cycles: the line sits on a bin, and a periodic Hann has three
    # non-zero DFT coefficients, so nothing of it leaks past +-0.5 Hz. Away from it the
    # residual is the noise up to rounding (<= 2 u64 |target| per sample) and the FFT's
    # (Higham's bound, see welch_error_bound: (9 L + 2) u64 sqrt(n) ||x|| <= 3e-12 relative to
    # a typical bin's |X|, n = 512). abs=1e-9 holds for bins down to 1/300 of the typical
    # amplitude; a leak of the line would show at 1e-3 or more.
    flat = math.sqrt(1.0 + away.eps)
    assert away(pred, target).item() == pytest.approx(flat, abs=1e-9)
    # The Hann main lobe of the line spans 24.5-25.5 Hz: a wider band would average in bins
    # where the target is noise only and the ratio is 1.
    # k / (512 / 256 Hz): binary fractions, computed exactly
    np.testing.assert_array_equal(in_band.frequencies, [24.5, 25.0, 25.5])
    assert in_band.mask.dtype == torch.bool and int(in_band.mask.sum()) == 3
    # 8 bins in 23-27 Hz: the 3 of the main lobe and 5 noise-only ones (ratio 1 as above)
    wider = ASDRatioLoss(FS, [(23.0, 27.0)], fftlength=2.0, overlap=1.0)
    assert wider(pred, target).item() == pytest.approx(
        (5 * flat + 3 * in_band(pred, target).item()) / 8, abs=1e-9
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


def test_skirt_term_charges_any_output_beside_the_band() -> None:
    """Skirts (issue 12): the ASD rise the prediction would cause there, no cross term.

    Exact cases as in test_loss_is_one_for_zero_and_zero_for_perfect_prediction (a few u64
    relative): zero costs nothing there; predicting the target itself, which a plain
    ASD-ratio loss over the widened band rewards as perfect, costs sqrt(2) - 1 there; half
    of it sqrt(1.25) - 1.
    """
    skirts = [(14.0, 36.0), (54.0, 76.0)]
    loss = ASDRatioLoss(FS, [(20.0, 30.0), (60.0, 70.0)], skirts=skirts, skirt_weight=1.0)
    plain = ASDRatioLoss(FS, skirts)
    assert int(loss.skirt.sum()) == 2 * 12 * 2 and not (loss.skirt & loss.mask).any()
    target = _signals()
    cases = {  # prediction, in-band PSD ratio, skirt PSD ratio of prediction to target
        "zero": (torch.zeros_like(target), 1.0, 0.0),
        "target": (target, 0.0, 1.0),
        "half": (0.5 * target, 0.25, 0.25),
    }
    for name, (pred, band_ratio, skirt_ratio) in cases.items():
        expected = math.sqrt(band_ratio + loss.eps) + math.sqrt(1 + skirt_ratio) - 1
        assert loss(pred, target).item() == pytest.approx(expected, rel=1e-14), name
    assert plain(target, target).item() == pytest.approx(math.sqrt(loss.eps), rel=1e-14)
    # differentiable, quadratic at zero output (zero gradient there), and zero weight is the
    # plain loss
    for scale in (0.0, 0.1):
        pred = (scale * target).requires_grad_(True)
        loss.skirt_rise(pred, target).sum().backward()
        assert pred.grad is not None and torch.isfinite(pred.grad).all()
        assert (pred.grad.abs().max() > 0) == (scale > 0)
    off = ASDRatioLoss(FS, [(20.0, 30.0)], skirts=[(14.0, 36.0)], skirt_weight=0.0)
    assert off(target, target).item() == ASDRatioLoss(FS, [(20.0, 30.0)])(target, target).item()
    with pytest.raises(ValueError, match="skirt_weight"):
        ASDRatioLoss(FS, [(20.0, 30.0)], skirts=skirts, skirt_weight=-1.0)
    with pytest.raises(ValueError, match="no frequency bin .* skirts"):
        ASDRatioLoss(FS, [(20.0, 30.0)], skirts=[(21.0, 29.0)])
