"""Resumable checkpoints, written atomically and read with ``weights_only=True``.

A checkpoint holds the unwrapped model state, the optimizer and scheduler
states, the RNG states (python, numpy, torch CPU and CUDA), the epoch and
step counters, the trainer's own state (best metric, early-stopping counter)
and the resolved config as YAML text.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twins.atomic import atomic_write
from twins.errors import TwinsError


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`twins.atomic.atomic_write` (missing parents are made).

    A crash at any instant leaves either the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def rng_state() -> dict[str, Any]:
    """Snapshot of every RNG the training loop uses, as tensors and plain containers."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNGs from :func:`rng_state`."""
    py = state["python"]
    random.setstate((py[-1], tuple(py[:-1]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs).

    Raises:
        TwinsError: If the file is missing or not a twins checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise TwinsError(f"checkpoint {path} not found", "train first, or drop --resume")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        raise TwinsError(f"checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
        raise TwinsError(f"checkpoint {path} is not a twins checkpoint (format 1)")
    return ckpt
