"""A fast inference copy of a trained :class:`~gravwave.models.DeepClean`, equal up to float32
rounding.

What the forward pass of the trained module spends its time on (torch.profiler, 4 x 8-s
windows of 21 witnesses at 4096 Hz, 2 threads; see ``benchmarks/bench_cleaning.py``): the
convolutions at the full rate (input, first encoder stage, last decoder stage, output),
``tanh`` (about ten times the cost of ``sigmoid`` per element in torch's CPU kernels),
BatchNorm, and the oneDNN reorders of ``(batch, channel, time)`` tensors into its
channels-last layout and back. The copy changes how, not what, it computes:

* every BatchNorm (inference: an affine map per channel) is folded into the convolution
  before it (``w' = w s``, ``b' = (b - mean) s + beta`` with ``s = gamma / sqrt(var + eps)``,
  in float64, then rounded to float32);
* the convolutions run as 2-D ``(1, k)`` convolutions on channels-last tensors, the layout
  oneDNN computes in, so nothing is reordered between layers;
* ``tanh(x) = 2 sigmoid(2 x) - 1`` in place (absolute error at most ``4 u`` against
  ``tanh`` of the float32 input, ``u = 2^-24``: ``sigmoid`` to 1 ulp of a value at most 1,
  doubled exactly, one rounded subtraction);
* the output convolution (one output channel) is one matrix product ``(time, C) @ (C, k)``
  and a sum of ``k`` shifted columns, instead of oneDNN's one-channel kernel;
* a decimated network's fixed anti-alias filter (``DeepClean(decimation=q)``) runs as a
  depthwise convolution on the same channels-last tensor.

:func:`rounding_bound` bounds, to first order in ``u``, how far any float32 evaluation of the
network (this copy, or the module itself in any summation order) can be from the exact one;
tests compare the two within twice that bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from gravwave.models.deepclean import DeepClean

__all__ = ["FastDeepClean", "FastForward", "rounding_bound"]

#: Unit roundoff of float32.
U32 = 2.0**-24


def _fold(conv: nn.Module, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 weight and bias of ``bn(conv(x))`` (a ConvTranspose's weight is
    ``(in, out, k)``: its output channels are the second axis)."""
    assert isinstance(conv, nn.Conv1d | nn.ConvTranspose1d) and conv.bias is not None
    assert bn.running_mean is not None and bn.running_var is not None
    s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = conv.weight.detach().double()
    w = w * (s[None, :, None] if isinstance(conv, nn.ConvTranspose1d) else s[:, None, None])
    b = (conv.bias.detach().double() - bn.running_mean.double()) * s + bn.bias.double()
    return w, b


def _tanh_(h: torch.Tensor) -> torch.Tensor:
    """``tanh`` in place as ``2 sigmoid(2 h) - 1`` (absolute error <= 4 u)."""
    return h.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


class FastDeepClean(nn.Module):
    """Inference-only copy of a trained :class:`~gravwave.models.DeepClean` (see module doc).

    Args:
        model: The trained network; its current weights and BatchNorm statistics are copied
            (a later change to ``model`` does not reach the copy).

    Shapes:
        ``forward(x)``: ``x`` is ``(batch, C, time)`` float32 with ``time`` a multiple of
        ``total_stride``; returns ``(batch, time)`` float32.
    """

    def __init__(self, model: DeepClean) -> None:
        super().__init__()
        self.in_channels = model.in_channels
        self.total_stride = model.total_stride
        self.kernel_size = model.kernel_size
        self.dilations = model.dilations
        self.res_kernel_size = model.res_kernel_size

        def param(t: torch.Tensor) -> nn.Parameter:
            return nn.Parameter(t.float().contiguous(), requires_grad=False)

        def conv2d(w: torch.Tensor) -> torch.Tensor:  # (out, in, k) -> (out, in, 1, k)
            return w[:, :, None].contiguous(memory_format=torch.channels_last)

        w, b = _fold(model.input[0], model.input[1])
        self.w_in, self.b_in = param(conv2d(w)), param(b)
        self.w_enc = nn.ParameterList()
        self.b_enc = nn.ParameterList()
        for blk in model.encoder:
            w, b = _fold(blk[0], blk[1])
            self.w_enc.append(param(conv2d(w)))
            self.b_enc.append(param(b))
        self.w_res1, self.b_res1 = nn.ParameterList(), nn.ParameterList()
        self.w_res2, self.b_res2 = nn.ParameterList(), nn.ParameterList()
        for res in model.bottleneck:
            body = res.body
            w, b = _fold(body[0], body[1])
            self.w_res1.append(param(conv2d(w)))
            self.b_res1.append(param(b))
            w, b = _fold(body[3], body[4])
            self.w_res2.append(param(conv2d(w)))
            self.b_res2.append(param(b))
        self.w_dec, self.b_dec = nn.ParameterList(), nn.ParameterList()
        for blk in model.decoder:
            w, b = _fold(blk[0], blk[1])
            self.w_dec.append(param(w[:, :, None].contiguous()))
            self.b_dec.append(param(b))
        out = model.output
        assert out.bias is not None
        self.w_out = param(out.weight.detach()[0].double())  # (C, k)
        self.b_out = float(out.bias.detach()[0])
        self.decimation = model.decimation
        if self.decimation > 1:  # the fixed filters, as they are (nothing to fold)
            self.w_down = param(conv2d(model.down_taps.detach()))  # (C, 1, 1, L)
            self.w_up = param(model.up_taps.detach())  # (1, 1, L)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ``(batch, time)`` from ``(batch, C, time)`` float32 witnesses."""
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (batch, {self.in_channels}, time) witnesses, got {tuple(x.shape)}"
            )
        n = x.shape[-1]
        if n % self.total_stride:
            raise ValueError(
                f"input length {n} must be divisible by the total stride {self.total_stride}"
            )
        p, dec = self.kernel_size // 2, self.decimation
        h = x[:, :, None].contiguous(memory_format=torch.channels_last)
        if dec > 1:
            half = self.w_down.shape[-1] // 2
            h = F.conv2d(h, self.w_down, stride=(1, dec), padding=(0, half), groups=h.shape[1])
            n //= dec
        h = _tanh_(F.conv2d(h, self.w_in, self.b_in, padding=(0, p)))
        for w, b in zip(self.w_enc, self.b_enc, strict=True):
            h = _tanh_(F.conv2d(h, w, b, stride=(1, 2), padding=(0, p)))
        q = self.res_kernel_size // 2
        for d, w1, b1, w2, b2 in zip(
            self.dilations, self.w_res1, self.b_res1, self.w_res2, self.b_res2, strict=True
        ):
            r = _tanh_(F.conv2d(h, w1, b1, padding=(0, q * d), dilation=(1, d)))
            h = h + F.conv2d(r, w2, b2)
        for w, b in zip(self.w_dec, self.b_dec, strict=True):
            h = F.conv_transpose2d(h, w, b, stride=(1, 2), padding=(0, p), output_padding=(0, 1))
            h = _tanh_(h.contiguous(memory_format=torch.channels_last))
        # output: y[t] = b + sum_j sum_c w[c, j] h[c, t + j - p]; h is (batch, 1, time, C)
        z = torch.matmul(h.permute(0, 2, 3, 1).reshape(h.shape[0], n, -1), self.w_out)
        z = F.pad(z.transpose(1, 2), (p, p))  # (batch, k, time + 2 p)
        y = z[:, 0, :n] + self.b_out
        for j in range(1, z.shape[1]):
            y += z[:, j, j : j + n]
        if dec > 1:
            half = self.w_up.shape[-1] // 2
            y = F.conv_transpose1d(
                y[:, None], self.w_up, stride=dec, padding=half, output_padding=dec - 1
            )[:, 0]
        return y


class FastForward:
    """Calls the :class:`FastDeepClean` copy of ``model``, rebuilt whenever a weight or
    BatchNorm statistic of ``model`` changed (in place or replaced) since it was made.

    Args:
        model: The trained network (kept by reference).
    """

    def __init__(self, model: DeepClean) -> None:
        self.model = model
        self._modules = list(model.modules())  # a DeepClean's layers are fixed at __init__
        self._key: tuple[tuple[int, int], ...] | None = None
        self._fast: FastDeepClean | None = None

    def copy(self) -> FastDeepClean:
        """The current fast copy (made or remade here if ``model`` changed)."""
        tensors = chain.from_iterable(
            chain(m._parameters.values(), m._buffers.values()) for m in self._modules
        )
        key = tuple((id(t), t._version) for t in tensors if t is not None)
        if self._fast is None or key != self._key:
            self._fast, self._key = FastDeepClean(self.model), key
        return self._fast

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time)`` float32 prediction of ``(batch, C, time)`` float32 witnesses
        (fastest with channel-minor memory, e.g. a ``(batch, C, 1, time)`` channels-last
        tensor's ``[:, :, 0]``: nothing to reorder)."""
        with torch.inference_mode():
            return self.copy()(x)


def rounding_bound(
    model: DeepClean,
    x: torch.Tensor,
    positions: Sequence[int],
    unit: float = U32,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """First-order bound on ``|fl(model(x)) - model(x)|`` at output samples ``positions``, for
    any evaluation with unit roundoff ``unit`` (float32 by default): the module itself in
    any summation order, or :class:`FastDeepClean` (BatchNorm folded, ``tanh`` through
    ``sigmoid``), at its own rate or decimated.

    Each operation's rounding is bounded locally (standard model, ``gamma_n = n unit /
    (1 - n unit)``): a convolution of fan-in ``K`` followed by its BatchNorm, folded or
    not, by ``|s| gamma_{K+4} (|W| * |h| + |b|) + gamma_{K+4} (|s mean| + |beta|) +
    gamma_3 (|s (c - mean)| + |beta|)`` (``c`` the convolution's output, ``s`` the
    BatchNorm scale); the output convolution by ``gamma_{K+3} (|W| * |h| + |b|)``; ``tanh``
    by ``4 unit`` (:func:`_tanh_`); the residual sum by ``unit |sum|``. Each local error
    reaches the output through the network's Jacobian, so the bound at output sample ``t``
    is ``sum_l sum_i |d y_t / d a_{l,i}| r_{l,i}`` over every operation ``l`` and element
    ``i``: the exact linearisation, not a product of ``|W|`` (which grows by the sum of
    ``|W|`` per layer and bounds nothing useful). Computed in float64 by one backward pass
    per position, in ``dtype``: float32 (the default) is ample for a bound (its own relative
    error, about ``1e-6`` of the bound, is covered by a 1 % margin) and uses oneDNN's
    kernels, float64 has none. The input's own rounding is not counted (compared
    evaluations take the same input).

    Args:
        model: The network (eval mode).
        x: ``(batch, C, time)`` witnesses.
        positions: Output samples to bound (each in ``[0, time)``).
        unit: Unit roundoff of the evaluation.
        dtype: Precision the bound is computed in.

    Returns:
        ``(batch, len(positions))`` float64 bounds (1 % margin included).
    """

    def gamma(n: int) -> float:
        return n * unit / (1 - n * unit)

    leaves: list[tuple[torch.Tensor, torch.Tensor]] = []

    def perturbed(y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        d = torch.zeros_like(y, requires_grad=True)
        leaves.append((d, r.detach()))
        return y + d

    def conv(layer: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        assert isinstance(layer, nn.Conv1d | nn.ConvTranspose1d) and layer.bias is not None
        w, b = (t.detach().to(dtype).clone() for t in (layer.weight, layer.bias))
        kw: dict[str, Any] = {"stride": layer.stride, "padding": layer.padding}
        kw["dilation"] = layer.dilation
        if isinstance(layer, nn.ConvTranspose1d):
            kw["output_padding"] = layer.output_padding
            y = F.conv_transpose1d(h, w, b, **kw)
            mag = F.conv_transpose1d(h.detach().abs(), w.abs(), b.abs(), **kw)
            return y, mag, w.shape[0] * -(-w.shape[2] // layer.stride[0])
        y = F.conv1d(h, w, b, **kw)
        mag = F.conv1d(h.detach().abs(), w.abs(), b.abs(), **kw)
        return y, mag, w.shape[1] * w.shape[2]

    def conv_bn_tanh(seq: nn.Module, h: torch.Tensor, act: bool = True) -> torch.Tensor:
        bn = seq[1]
        assert isinstance(bn, nn.BatchNorm1d)
        assert bn.running_mean is not None and bn.running_var is not None
        c, mag, fan = conv(seq[0], h)
        s = (bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)).to(dtype)[:, None]
        mean = bn.running_mean.to(dtype).clone()[:, None]
        beta = bn.bias.detach().to(dtype).clone()[:, None]
        y = (c - mean) * s + beta
        r = s.abs() * gamma(fan + 4) * mag + gamma(fan + 4) * ((s * mean).abs() + beta.abs())
        r = r + gamma(3) * (((c - mean) * s).abs() + beta.abs())
        y = perturbed(y, r)
        if not act:
            return y
        return perturbed(torch.tanh(y), torch.full_like(y, 4 * unit))

    h = x.detach().to(dtype).clone()
    dec = model.decimation
    if dec > 1:  # the fixed anti-alias filter: fan-in L per output
        taps = model.down_taps.detach().to(dtype).clone()
        kw = {"stride": dec, "padding": taps.shape[-1] // 2, "groups": h.shape[1]}
        mag = F.conv1d(h.abs(), taps.abs(), **kw)
        h = perturbed(F.conv1d(h, taps, **kw), gamma(taps.shape[-1] + 3) * mag)
    h = conv_bn_tanh(model.input, h)
    for blk in model.encoder:
        h = conv_bn_tanh(blk, h)
    for res in model.bottleneck:
        body = res.body
        r = conv_bn_tanh(body[:3], h)
        r = conv_bn_tanh(nn.Sequential(body[3], body[4]), r, act=False)
        h = perturbed(h + r, unit * (h + r).abs())
    for blk in model.decoder:
        h = conv_bn_tanh(blk, h)
    out, mag, fan = conv(model.output, h)
    y = perturbed(out, gamma(fan + 3) * mag)
    if dec > 1:  # zero-stuffed and low-passed: ceil(L / q) taps reach each output
        taps = model.up_taps.detach().to(dtype).clone()
        kw = {"stride": dec, "padding": taps.shape[-1] // 2, "output_padding": dec - 1}
        mag = F.conv_transpose1d(y.detach().abs(), taps.abs(), **kw)
        fan = -(-taps.shape[-1] // dec)
        y = perturbed(F.conv_transpose1d(y, taps, **kw), gamma(fan + 3) * mag)
    y = y[:, 0]
    bounds = torch.zeros(x.shape[0], len(positions), dtype=torch.float64)
    for j, t in enumerate(positions):
        grads = torch.autograd.grad(y[:, t].sum(), [d for d, _ in leaves], retain_graph=True)
        for g, (_, r) in zip(grads, leaves, strict=True):
            bounds[:, j] += (g.abs() * r).flatten(1).sum(1).double()
    return bounds * 1.01
