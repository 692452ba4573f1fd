"""NVIDIA GPU energy counters read through NVML (package ``nvidia-ml-py``, module ``pynvml``).

``nvmlDeviceGetTotalEnergyConsumption`` returns the energy a GPU has used since the
driver was loaded, in millijoules, as a 64-bit counter (Volta and newer). It does not
wrap in practice; a decrease is treated as a driver reload.

Everything here degrades to "unavailable": a missing ``pynvml`` module, a missing
driver library (``NVMLError_LibraryNotFound``), a GPU without the counter
(``NVMLError_NotSupported``) or any other NVML error is logged at debug level and the
GPU (or all of NVML) is left out.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

JOULES_PER_MJ = 1e-3
"""Joules per NVML counter unit (the counter counts millijoules)."""


@dataclass(frozen=True)
class NvmlGpu:
    """One GPU whose energy counter could be read.

    Attributes:
        index: NVML device index (PCI bus order, which may differ from CUDA's order
            unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``).
        label: Report key, ``"nvml:gpu<index>"``.
        read_mj: Returns the counter in millijoules since driver load, or raises.
    """

    index: int
    label: str
    read_mj: Callable[[], int]


def visible_indices(count: int, env: str | None = None) -> list[int]:
    """NVML indices of the GPUs this process may use.

    ``CUDA_VISIBLE_DEVICES`` is honoured when it is a comma-separated list of integers
    (as CUDA does, the list stops at the first negative index). Any other value (GPU
    UUIDs, MIG ids) or an unset variable selects all ``count`` GPUs.

    Args:
        count: Number of GPUs NVML reports.
        env: Value of ``CUDA_VISIBLE_DEVICES``; read from the environment when None.

    Returns:
        Sorted, de-duplicated indices in ``range(count)``.
    """
    if env is None:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(range(count))
    env = env.strip()
    if not env:
        return []
    picked: list[int] = []
    for part in env.split(","):
        try:
            idx = int(part.strip())
        except ValueError:
            logger.debug("CUDA_VISIBLE_DEVICES=%r is not a list of integers: using all GPUs", env)
            return list(range(count))
        if idx < 0:
            break
        if idx < count and idx not in picked:
            picked.append(idx)
    return sorted(picked)


def _import_pynvml() -> ModuleType | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError as err:
        logger.debug("NVML unavailable: cannot import pynvml (%s)", err)
        return None


class NvmlSession:
    """An initialised NVML library plus the GPUs whose energy counter works.

    Use :meth:`open`; call :meth:`close` when done (NVML init is reference counted, so
    several sessions may coexist).
    """

    def __init__(self, module: Any, gpus: list[NvmlGpu]) -> None:
        self._nvml = module
        self.gpus = gpus
        self._closed = False

    @classmethod
    def open(cls) -> NvmlSession | None:
        """Initialise NVML and probe every visible GPU's energy counter.

        Returns:
            A session with at least one readable GPU, or None when NVML or every GPU
            counter is unavailable. Never raises.
        """
        nvml = _import_pynvml()
        if nvml is None:
            return None
        # Any failure of this optional probe must leave training running, so NVMLError
        # and whatever else the binding raises (OSError from ctypes...) are caught.
        try:
            nvml.nvmlInit()
        except Exception as err:
            logger.debug("NVML unavailable: nvmlInit failed (%s: %s)", type(err).__name__, err)
            return None
        gpus: list[NvmlGpu] = []
        try:
            count = int(nvml.nvmlDeviceGetCount())
            for idx in visible_indices(count):
                gpu = _probe(nvml, idx)
                if gpu is not None:
                    gpus.append(gpu)
        except Exception as err:
            logger.debug("NVML unavailable: device query failed (%s: %s)", type(err).__name__, err)
            gpus = []
        session = cls(nvml, gpus)
        if not gpus:
            session.close()
            return None
        return session

    def close(self) -> None:
        """Shut NVML down (once); errors are logged and ignored."""
        if self._closed:
            return
        self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except Exception as err:
            logger.debug("nvmlShutdown failed: %s", err)


def _probe(nvml: Any, idx: int) -> NvmlGpu | None:
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(idx)
        int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception as err:
        logger.debug(
            "NVML GPU %d has no readable energy counter (%s: %s)", idx, type(err).__name__, err
        )
        return None

    def read_mj() -> int:
        return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    return NvmlGpu(index=idx, label=f"nvml:gpu{idx}", read_mj=read_mj)
