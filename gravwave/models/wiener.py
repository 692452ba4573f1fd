"""Multi-channel Wiener filter: least-squares FIR from witnesses to strain noise.

The prediction of the strain noise ``y`` from ``C`` witnesses ``x_c`` is a sum of FIR
filters with ``L = n_taps`` taps each::

    y_hat[t] = sum_c sum_{k=0}^{L-1} h_c[k] * x_c[t - k - k0]

with ``k0 = 0`` for a **causal** filter (the default: usable online, and right for
physical couplings, which are causal) or ``k0 = -(L // 2)`` for a **centred** filter
(lags ``-L//2 .. L - 1 - L//2``: also sees ``L // 2`` samples of future witness data,
for offline cleaning of couplings whose witnesses lag the strain).

The taps minimise the mean squared residual, i.e. they solve the block-Toeplitz normal
equations ``(R + ridge * I) h = p`` with ``R[(c, k), (d, m)] = r_cd[m - k]`` and
``p[(c, k)] = r_yc[k + k0]``. Correlations are the biased (divide by ``T``) estimates of
the whole training span, computed with zero-padded FFTs; this keeps ``R`` positive
semi-definite and costs ``O(C^2 T log T)`` instead of building a ``T x C L`` design
matrix. Witnesses are scaled to unit variance inside the fit, so ``ridge`` is relative to
each channel's power (``1e-6`` barely biases a well-posed fit and keeps duplicated or
dead-band witnesses solvable); the returned taps act on unscaled witnesses.

**Witness selection** (``select_channels``): a witness that does not couple still gets taps,
fitted to the noise of the training span, and they add that noise to every prediction, in
band, where the cleaning is measured: about ``L / T`` of the residual power per witness
(``L`` taps, ``T`` samples). With 18 uncoupled witnesses of 21 that was about 7 % of the
noise floor's power in the Wiener band (``benchmarks/gravwave_acceptance.py --seed 11 --gps
1300300000``: the Wiener stage's in-band ASD ratio 0.311 with every witness, 0.301 with
selection, oracle 0.299); on seed 7 the residual in that band put one injection's SNR 2.1 %
below its value in the oracle. Each witness alone is too weak a test (its share is of the
order of its own noise), the group is not: with selection the last :data:`SELECT_HOLDOUT` of
the span is held out, the witnesses are ranked by the power each explains alone on the rest,
the filter of the first ``m`` is fitted there for ``m`` in :data:`SELECT_COUNTS` (and every
witness), the ``m`` whose prediction leaves the least residual on the held-out part is kept,
and the taps of those witnesses are refitted on the whole span; the others' taps are zero.

With ``bands`` set, witnesses and target are band-passed (zero-phase, order-8 Butterworth,
:func:`gravwave.preprocess.bandpass`) before fitting and witnesses again before predicting,
so the filter is fitted in band only and its output is band-limited ("in-band Wiener",
the variant that worked best in reference/feasibility-gravwave.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg
from scipy import signal

from gravwave.preprocess import Band, bandpass, check_bands

log = logging.getLogger(__name__)

#: Share of the span held out to choose the witnesses (module doc).
SELECT_HOLDOUT = 0.2
#: Numbers of top-ranked witnesses tried (and every witness).
SELECT_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16)


class WienerFilter:
    """Multi-channel least-squares FIR filter (witnesses -> strain noise).

    Args:
        n_taps: Taps per witness channel ``L`` (e.g. 192 at 4096 Hz = 47 ms).
        sample_rate: Sampling rate in Hz of witnesses and target.
        bands: ``(low, high)`` pairs in Hz to fit in band, or ``None`` for broadband.
        ridge: Tikhonov term added to the diagonal of the normal equations, relative to
            unit witness variance.
        centred: Use lags ``-L//2 .. L-1-L//2`` (non-causal) instead of ``0 .. L-1``.
        order: Butterworth order of the band-passes.
        select_channels: Keep only the witnesses that lower the residual on a held-out part
            of the span (module doc); the others' taps are zero.

    Attributes:
        taps: ``(channel, n_taps)`` float64 after :meth:`fit`; ``taps[c, k]`` multiplies
            ``x_c[t - k - lag0]``.
    """

    def __init__(
        self,
        n_taps: int,
        sample_rate: float,
        bands: Sequence[Sequence[float]] | None = None,
        *,
        ridge: float = 1e-6,
        centred: bool = False,
        order: int = 8,
        select_channels: bool = False,
    ) -> None:
        self._configure(n_taps, sample_rate, bands, ridge=ridge, centred=centred, order=order)
        self.select_channels = bool(select_channels)
        self.taps: np.ndarray | None = None
        self.witness_mean: np.ndarray | None = None
        self.target_mean: float = 0.0

    def _configure(
        self,
        n_taps: int,
        sample_rate: float,
        bands: Sequence[Sequence[float]] | None,
        *,
        ridge: float,
        centred: bool,
        order: int,
    ) -> None:
        if int(n_taps) < 1:
            raise ValueError(f"n_taps must be >= 1, got {n_taps}")
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        self.n_taps = int(n_taps)
        self.sample_rate = float(sample_rate)
        self.bands: list[Band] | None = (
            None if bands is None else check_bands(bands, self.sample_rate)
        )
        self.ridge = float(ridge)
        self.centred = bool(centred)
        self.order = int(order)

    @property
    def lag0(self) -> int:
        """Lag of the first tap in samples (0 causal, ``-(n_taps // 2)`` centred)."""
        return -(self.n_taps // 2) if self.centred else 0

    @property
    def fitted(self) -> bool:
        """Whether taps are available."""
        return self.taps is not None

    def _prepare(self, witnesses: np.ndarray) -> np.ndarray:
        x = np.asarray(witnesses, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"witnesses must be (channel, time), got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("witnesses contain NaN or inf")
        if self.bands is not None:
            x = bandpass(x, self.bands, self.sample_rate, self.order)
        return x

    def fit(self, witnesses: np.ndarray, target: np.ndarray) -> WienerFilter:
        """Fit the taps by least squares.

        Args:
            witnesses: ``(channel, time)`` witness data (float64 recommended).
            target: ``(time,)`` strain (or strain noise) to predict.

        Returns:
            ``self``.

        Raises:
            ValueError: On mismatched shapes, non-finite data or a span shorter than
                ``2 * n_taps`` samples.
        """
        start = time.perf_counter()
        x = self._prepare(witnesses)
        y = np.asarray(target, dtype=np.float64)
        n_ch, n_t = x.shape
        if y.shape != (n_t,):
            raise ValueError(f"target must be (time,) = ({n_t},), got shape {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError("target contains NaN or inf")
        L = self.n_taps
        if n_t < 2 * L:
            raise ValueError(f"need at least 2 * n_taps = {2 * L} samples, got {n_t}")
        if self.bands is not None:
            y = bandpass(y, self.bands, self.sample_rate, self.order)

        self.witness_mean = x.mean(axis=1)
        self.target_mean = float(y.mean())
        x = x - self.witness_mean[:, None]
        y = y - self.target_mean
        scale = x.std(axis=1)
        scale[scale == 0] = 1.0  # a silent channel: zero taps (ridge or minimum norm)
        x = x / scale[:, None]

        keep = np.arange(n_ch)
        if self.select_channels and n_ch > 1:
            keep = self._select(x, y)
        h = np.zeros((n_ch, L))
        if keep.size:
            R, p = self._normal_equations(x[keep], y)
            h[keep] = self._solve(R, p).reshape(keep.size, L)
        self.taps = h / scale[:, None]
        log.info(
            "Wiener fit: %d channels (%d kept) x %d taps on %d samples in %.2f s",
            n_ch,
            keep.size,
            L,
            n_t,
            time.perf_counter() - start,
        )
        return self

    def _normal_equations(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(R + ridge I, p)`` of scaled, centred witnesses ``x (channel, time)`` and target
        ``y (time,)`` (module doc)."""
        n_ch, n_t = x.shape
        L = self.n_taps
        # Biased correlations from zero-padded FFTs: r_ab[tau] = sum_t a[t + tau] b[t] / T.
        n_fft = scipy.fft.next_fast_len(n_t + L + abs(self.lag0), real=True)
        X = scipy.fft.rfft(x, n=n_fft, axis=1)
        Y = scipy.fft.rfft(y, n=n_fft)
        idx = np.arange(L)
        # Position of the lag k - m in an array of lags -(L-1) .. L-1.
        lag_index = idx[:, None] - idx[None, :] + (L - 1)
        lag_pos = np.arange(-(L - 1), L) % n_fft
        R = np.empty((n_ch * L, n_ch * L))
        for c in range(n_ch):
            for d in range(c, n_ch):
                # r_dc[tau] = sum_t x_d[t + tau] x_c[t] / T at tau = -(L-1) .. L-1
                r_dc = scipy.fft.irfft(X[d] * np.conj(X[c]), n=n_fft)[lag_pos] / n_t
                # R[(c,k),(d,m)] = E[x_c[t-k] x_d[t-m]] = r_dc[k - m]
                block = r_dc[lag_index]
                R[c * L : (c + 1) * L, d * L : (d + 1) * L] = block
                if d != c:
                    R[d * L : (d + 1) * L, c * L : (c + 1) * L] = block.T
        # p[(c,k)] = E[y[t] x_c[t-k-k0]] = r_yc[k + k0]; one channel at a time bounds memory.
        p_pos = (idx + self.lag0) % n_fft
        p = np.concatenate(
            [scipy.fft.irfft(Y * np.conj(X[c]), n=n_fft)[p_pos] / n_t for c in range(n_ch)]
        )
        R[np.diag_indices_from(R)] += self.ridge
        return R, p

    def _select(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Indices of the witnesses to keep (module doc): ``x (channel, time)`` scaled and
        centred, ``y (time,)`` centred."""
        n_ch, n_t = x.shape
        L = self.n_taps
        split = round(n_t * (1 - SELECT_HOLDOUT))
        if split < 2 * L or n_t - split < 2 * L:
            return np.arange(n_ch)  # too short to hold a part out: every witness
        R, p = self._normal_equations(x[:, :split], y[:split])
        alone = np.empty(n_ch)
        for c in range(n_ch):
            rows = slice(c * L, (c + 1) * L)
            alone[c] = p[rows] @ self._solve(R[rows, rows], p[rows])
        order = np.argsort(-alone, kind="stable")
        # the held-out part and the L - 1 samples of history its first output needs
        # (lag0 <= 0: a centred filter needs future samples instead, so it ends earlier)
        a, b = split - (L - 1), n_t + self.lag0
        held = y[split:b]
        residual = {}
        for m in sorted({*(k for k in SELECT_COUNTS if k < n_ch), n_ch}):
            chans = order[:m]
            rows = (chans[:, None] * L + np.arange(L)).ravel()
            h = self._solve(R[np.ix_(rows, rows)], p[rows]).reshape(m, L)
            full = signal.oaconvolve(x[chans, a:n_t], h, mode="full", axes=1).sum(axis=0)
            # y_hat[t] = full[t - a - lag0] (module doc's sum, taps from lag0)
            pred = full[split - a - self.lag0 : b - a - self.lag0]
            residual[m] = float(np.mean((held - pred) ** 2))
        best = min(residual, key=lambda m: residual[m])
        log.info(
            "Wiener witness selection on %.0f %% held out: residual by witnesses kept %s; "
            "kept %d of %d",
            100 * SELECT_HOLDOUT,
            {m: f"{r:.4g}" for m, r in residual.items()},
            best,
            n_ch,
        )
        return np.sort(order[:best])

    @staticmethod
    def _solve(R: np.ndarray, p: np.ndarray) -> np.ndarray:
        try:
            factor = scipy.linalg.cho_factor(R, lower=True, check_finite=False)
            return scipy.linalg.cho_solve(factor, p, check_finite=False)
        except np.linalg.LinAlgError:
            log.warning(
                "Wiener normal equations are singular (duplicated or silent witnesses?); "
                "using the minimum-norm least-squares solution. Consider a larger ridge."
            )
            return scipy.linalg.lstsq(R, p, cond=1e-12, check_finite=False)[0]

    def predict(self, witnesses: np.ndarray) -> np.ndarray:
        """Predict the strain noise (band-passed if ``bands`` is set).

        Samples before the start (and, centred, after the end) of ``witnesses`` are
        taken as zero, so the first ``n_taps`` outputs carry an edge transient.

        Args:
            witnesses: ``(channel, time)`` with the channels used in :meth:`fit`.

        Returns:
            ``(time,)`` float64 prediction in the units of the target.
        """
        if self.taps is None or self.witness_mean is None:
            raise RuntimeError("WienerFilter is not fitted: call fit() or load_state_dict()")
        x = self._prepare(witnesses)
        if x.shape[0] != self.taps.shape[0]:
            raise ValueError(f"expected {self.taps.shape[0]} witness channels, got {x.shape[0]}")
        x = x - self.witness_mean[:, None]
        n_t = x.shape[1]
        full = signal.oaconvolve(x, self.taps, mode="full", axes=1).sum(axis=0)
        start = -self.lag0  # y_hat[t] = full[t - lag0]
        out = full[start : start + n_t]
        return out + self.target_mean

    def state_dict(self) -> dict[str, Any]:
        """Configuration and fitted arrays (numpy / plain Python values)."""
        if self.taps is None or self.witness_mean is None:
            raise RuntimeError("WienerFilter is not fitted")
        return {
            "n_taps": self.n_taps,
            "sample_rate": self.sample_rate,
            "bands": None if self.bands is None else [list(b) for b in self.bands],
            "ridge": self.ridge,
            "centred": self.centred,
            "order": self.order,
            "taps": self.taps.copy(),
            "witness_mean": self.witness_mean.copy(),
            "target_mean": self.target_mean,
        }

    def load_state_dict(self, state: dict[str, Any]) -> WienerFilter:
        """Restore configuration and taps from :meth:`state_dict` (strict: no unknown keys).

        Returns:
            ``self``.
        """
        expected = {
            "n_taps",
            "sample_rate",
            "bands",
            "ridge",
            "centred",
            "order",
            "taps",
            "witness_mean",
            "target_mean",
        }
        if set(state) != expected:
            raise ValueError(
                f"WienerFilter state keys differ: missing {sorted(expected - set(state))}, "
                f"unknown {sorted(set(state) - expected)}"
            )
        taps = np.asarray(state["taps"], dtype=np.float64)
        mean = np.asarray(state["witness_mean"], dtype=np.float64)
        if (
            taps.ndim != 2
            or taps.shape[1] != int(state["n_taps"])
            or mean.shape != taps[:, 0].shape
        ):
            raise ValueError(
                f"inconsistent WienerFilter state: taps {taps.shape}, n_taps {state['n_taps']}, "
                f"witness_mean {mean.shape}"
            )
        self._configure(
            state["n_taps"],
            state["sample_rate"],
            state["bands"],
            ridge=state["ridge"],
            centred=state["centred"],
            order=state["order"],
        )
        self.taps, self.witness_mean = taps, mean
        self.target_mean = float(state["target_mean"])
        return self

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> WienerFilter:
        """Build a fitted filter from :meth:`state_dict` output."""
        return cls(1, 1.0).load_state_dict(state)
