"""Model wrappers of the drought forecaster: per-output state selection, tile ConvLSTM.

:class:`PerOutputSelect` wraps a network with ``n_outputs`` outputs along dim 1. While
training it is the network. After training, :meth:`PerOutputSelect.set_members` installs
one copy of the network per distinct selected state (the best validation state of each
output, see :class:`hydrology.callbacks.PerOutputBest`) and output ``i`` is taken from
member ``selection[i]``. Members and the selection are part of the state dict, so the
selected model saves and loads like any module (:func:`load_selected`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from hydrology.models.convlstm import ConvLSTMForecaster
from hydrology.models.lstm import CellLSTM


class PerOutputSelect(nn.Module):
    """A network whose output ``i`` may come from its own selected state.

    Args:
        net: Network mapping ``*inputs`` to ``(batch, n_outputs, ...)``.
        n_outputs: Number of outputs (dim 1 of the network's result).
    """

    def __init__(self, net: nn.Module, n_outputs: int) -> None:
        super().__init__()
        self.net = net
        self.n_outputs = n_outputs
        self.members = nn.ModuleList()
        self.register_buffer("selection", torch.zeros(0, dtype=torch.long))

    def set_members(
        self, states: list[Mapping[str, torch.Tensor]] | int, selection: list[int] | None = None
    ) -> None:
        """Install member networks.

        Args:
            states: State dicts of ``net`` (one per member), or a member count (fresh copies,
                e.g. before ``load_state_dict``).
            selection: Member index of each output (length ``n_outputs``).
        """
        n = states if isinstance(states, int) else len(states)
        self.members = nn.ModuleList(copy.deepcopy(self.net) for _ in range(n))
        if not isinstance(states, int):
            for m, st in zip(self.members, states, strict=True):
                m.load_state_dict(st)
        sel = selection if selection is not None else [0] * self.n_outputs
        if len(sel) != self.n_outputs:
            raise ValueError(f"selection has {len(sel)} entries, need {self.n_outputs}")
        self.selection = torch.tensor(sel, dtype=torch.long)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, n_outputs, ...)`` from the network or the selected members."""
        if len(self.members) == 0:
            return self.net(*inputs)
        outs = [m(*inputs) for m in self.members]
        sel = self.selection.tolist()
        return torch.stack([outs[s][:, i] for i, s in enumerate(sel)], dim=1)


def member_count(state: Mapping[str, torch.Tensor]) -> int:
    """Members recorded in a :class:`PerOutputSelect` state dict."""
    ids = {int(k.split(".")[1]) for k in state if k.startswith("members.")}
    return max(ids) + 1 if ids else 0


def net_member_count(state: Mapping[str, torch.Tensor]) -> int:
    """Seed-ensemble members of the wrapped :class:`CellLSTM` (1 for a single network)."""
    ids = {int(k.split(".")[2]) for k in state if k.startswith("net.nets.")}
    return max(ids) + 1 if ids else 1


def load_selected(model: PerOutputSelect, state: Mapping[str, torch.Tensor]) -> PerOutputSelect:
    """Load a (possibly member-holding) state dict into a freshly built wrapper, strictly.

    A :class:`CellLSTM` whose seed-ensemble size or linear skip differs from the state's
    is rebuilt like the state first (so a forecaster rebuilt from its basic architecture
    loads an ensemble with skip paths).
    """
    net = model.net
    if isinstance(net, CellLSTM):
        k_net = net_member_count(state)
        skip = any(k.startswith("net.") and k.endswith("skip.weight") for k in state)
        if net.n_members != k_net or net.skip_linear != skip:
            model.net = net.resized(k_net, skip)
    k = member_count(state)
    if k:
        model.set_members(k)
    else:
        model.selection = torch.zeros(0, dtype=torch.long)
    model.load_state_dict(state)
    return model


class TileConvLSTM(nn.Module):
    """ConvLSTM on space-time tiles with the same inputs as :class:`CellLSTM`.

    Static maps and (with ``residual``) the baseline maps are repeated over time as
    extra channels; with ``residual`` the output is ``baseline + correction``.

    Args:
        n_dynamic: Dynamic channels.
        n_static: Static channels.
        n_outputs: Output maps.
        hidden: Hidden channels.
        residual: Use the baseline forecast as input and learn the correction.
    """

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        n_outputs: int,
        hidden: int = 16,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        extra = n_outputs if residual else 0
        self.net = ConvLSTMForecaster(n_dynamic + n_static + extra, n_outputs, hidden)
        if residual:
            nn.init.zeros_(self.net.head.weight)
            nn.init.zeros_(self.net.head.bias)

    def forward(
        self, dynamic: torch.Tensor, static: torch.Tensor, baseline: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Forecast maps.

        Args:
            dynamic: ``(batch, seq, n_dynamic, H, W)``.
            static: ``(batch, n_static, H, W)``.
            baseline: ``(batch, n_outputs, H, W)``, required when ``residual``.

        Returns:
            ``(batch, n_outputs, H, W)``.
        """
        seq = dynamic.shape[1]
        parts = [dynamic, static.unsqueeze(1).expand(-1, seq, -1, -1, -1)]
        if self.residual:
            if baseline is None:
                raise ValueError("TileConvLSTM(residual=True) needs a baseline forecast")
            parts.append(baseline.unsqueeze(1).expand(-1, seq, -1, -1, -1))
        out = self.net(torch.cat(parts, dim=2))
        return out + baseline if self.residual and baseline is not None else out
