"""Test-wide settings: quiet, single-spin-free threads, no network."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

# Must be set before torch is imported anywhere: libgomp reads it at load time. On these
# VMs active spin-waiting makes torch steps 10-100x slower at random (reference/stack.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("MLFLOW_TRACKING_URI", None)
# The CLI's last guard writes tracebacks of unexpected failures here, not into $HOME.
os.environ.setdefault("TWINS_LOG_DIR", tempfile.mkdtemp(prefix="twins-test-logs-"))
for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_ID", "SLURM_NTASKS"):
    os.environ.pop(var, None)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _dir_snapshot(directory: Path, *, skip_lock: bool = False) -> dict[str, object]:
    """Every entry below ``directory``: ``(size, mtime_ns, sha256)`` of files, "dir" for dirs."""
    out: dict[str, object] = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if skip_lock and rel == ".lock":
            continue
        if path.is_file():
            st = path.stat()
            out[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).digest())
        else:
            out[rel] = "dir"
    return out


@pytest.fixture
def dir_snapshot() -> Callable[..., dict[str, object]]:
    """``dir_snapshot(directory, skip_lock=False)``: compare before/after to prove that an
    operation wrote nothing (sizes, mtimes and content hashes of every entry)."""
    return _dir_snapshot


_CLUSTER_MARKS = ("distributed", "ray", "slurm")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n 2 --dist loadgroup``) every test that starts processes of its
    own (torchrun ranks, a Ray cluster, the session's Slurm daemons) runs on one worker, one
    after another: two Ray heads or two Slurm clusters at once would compete for the 2 cores
    and the session fixtures would start twice. The other worker takes the rest."""
    for item in items:
        if any(item.get_closest_marker(m) for m in _CLUSTER_MARKS):
            item.add_marker(pytest.mark.xdist_group("cluster"))
