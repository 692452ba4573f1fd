"""The cleaner contract of the noise twin, and the linear (Wiener) cleaner.

A cleaner predicts the noise that witness channels explain in the strain
channel; cleaning subtracts it. The twin (:mod:`gravwave.twin`) and the
offline/online cleaning code only talk to this contract, so the linear stage
alone, the network alone or their cascade are interchangeable. Cleaners are
saved as one ``torch.save`` file of plain tensors, numbers and strings
(loadable with ``weights_only=True``) whose ``"kind"`` selects the class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from gravwave.models.wiener import WienerFilter
from twins.errors import DataError

Band = tuple[float, float]


@runtime_checkable
class Cleaner(Protocol):
    """Predicts strain noise from witnesses.

    Attributes:
        strain_channel: Name of the strain channel it cleans.
        witness_channels: Witness channel names, in the order ``noise`` expects them.
        sample_rate: Working rate in Hz of the arrays it takes.
        bands: Frequency bands (Hz) in which it subtracts noise.
    """

    strain_channel: str
    witness_channels: tuple[str, ...]
    sample_rate: float
    bands: tuple[Band, ...]

    def noise(self, witnesses: np.ndarray) -> np.ndarray:
        """Predicted strain noise ``(time,)`` [strain] from witnesses ``(channel, time)``."""
        ...

    def save(self, path: Path) -> Path:
        """Write the cleaner to one file; returns the path."""
        ...


_LOADERS: dict[str, Callable[[dict[str, Any]], Cleaner]] = {}


def register_cleaner(kind: str) -> Callable[[type], type]:
    """Class decorator: :func:`load_cleaner` builds ``kind`` files with ``cls.from_state``."""

    def deco(cls: type) -> type:
        _LOADERS[kind] = cls.from_state  # type: ignore[attr-defined]
        return cls

    return deco


def load_cleaner(path: str | Path) -> Cleaner:
    """Load any registered cleaner from its file.

    Raises:
        DataError: Missing file, unreadable file or unknown kind.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"cleaner file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        raise DataError(f"cleaner file {path} cannot be read: {exc}") from None
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in _LOADERS:
        import gravwave.cascade  # noqa: F401 - registers the network and cascade kinds
    if kind not in _LOADERS:
        known = ", ".join(sorted(_LOADERS)) or "none"
        raise DataError(f"cleaner file {path}: unknown kind {kind!r} (known: {known})")
    return _LOADERS[kind](state)


def check_witnesses(witnesses: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """Validate a ``(channel, time)`` witness array against the expected channel list."""
    arr = np.asarray(witnesses, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != len(channels):
        raise DataError(
            f"witnesses have shape {arr.shape}; expected ({len(channels)}, time) for "
            f"channels {list(channels)}"
        )
    return arr


@register_cleaner("wiener")
class WienerCleaner:
    """The linear stage alone: an in-band multi-channel Wiener filter.

    Args:
        strain_channel: Strain channel name.
        witness_channels: Witness channel names (order of the rows of ``witnesses``).
        sample_rate: Working rate in Hz.
        bands: Bands in Hz to fit and subtract in.
        n_taps: FIR taps per witness.
    """

    def __init__(
        self,
        strain_channel: str,
        witness_channels: Sequence[str],
        sample_rate: float,
        bands: Sequence[Band],
        n_taps: int = 256,
    ) -> None:
        self.strain_channel = strain_channel
        self.witness_channels = tuple(witness_channels)
        self.sample_rate = float(sample_rate)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)
        self.filter = WienerFilter(n_taps, self.sample_rate, self.bands)

    def fit(self, witnesses: np.ndarray, strain: np.ndarray) -> WienerCleaner:
        """Fit on ``witnesses (channel, time)`` and ``strain (time,)`` at :attr:`sample_rate`."""
        w = check_witnesses(witnesses, self.witness_channels)
        self.filter.fit(w, np.asarray(strain, dtype=np.float64))
        return self

    def noise(self, witnesses: np.ndarray) -> np.ndarray:
        """Predicted in-band strain noise ``(time,)``."""
        return self.filter.predict(check_witnesses(witnesses, self.witness_channels))

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the cleaner (tensors, numbers, strings)."""
        filt = {
            k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
            for k, v in self.filter.state_dict().items()
        }
        return {
            "kind": "wiener",
            "strain_channel": self.strain_channel,
            "witness_channels": list(self.witness_channels),
            "sample_rate": self.sample_rate,
            "bands": [list(b) for b in self.bands],
            "filter": filt,
        }

    def save(self, path: Path) -> Path:
        """Write :meth:`state` with ``torch.save``."""
        path = Path(path)
        torch.save(self.state(), path)
        return path

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WienerCleaner:
        """Rebuild from :meth:`state`."""
        filt = {
            k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state["filter"].items()
        }
        obj = cls(
            state["strain_channel"],
            state["witness_channels"],
            state["sample_rate"],
            [tuple(b) for b in state["bands"]],
            n_taps=int(filt["n_taps"]),
        )
        obj.filter = WienerFilter.from_state_dict(filt)
        return obj
