"""dask_client: a LocalCluster under a memory limit, a scheduler by address, the threaded
scheduler below the size threshold, progress lines, config errors and clean shutdown."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import psutil
import pytest
import zarr
from distributed import Client, LocalCluster, default_client

from twins.compute.cluster import choose_mode, dask_client
from twins.compute.config import ComputeConfig
from twins.config import load_config
from twins.errors import ConfigError

ROWS, COLS = 4000, 12000  # 48e6 float64 = 384 MB on the grid, above the 300 MB worker limit
BLOCK = (500, 2000)  # 8 MB chunks: a worker holds a few at a time


@pytest.fixture(scope="module")
def big_zarr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``x[i, j] = i * COLS + j`` as float64 in an uncompressed Zarr store on disk, written
    one row block at a time (this process never holds the whole array)."""
    path = tmp_path_factory.mktemp("zarr") / "x.zarr"
    arr = zarr.create_array(
        store=str(path), shape=(ROWS, COLS), chunks=BLOCK, dtype="f8", compressors=None
    )
    cols = np.arange(COLS, dtype="f8")
    for r0 in range(0, ROWS, BLOCK[0]):
        rows = np.arange(r0, r0 + BLOCK[0], dtype="f8")
        arr[r0 : r0 + BLOCK[0], :] = rows[:, None] * COLS + cols[None, :]
    return path


@pytest.fixture(scope="module")
def external_scheduler() -> Iterator[LocalCluster]:
    """A scheduler with one thread worker, started by the test and not by dask_client."""
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        yield cluster


def _children() -> set[int]:
    """Pids of this process's live descendants, less multiprocessing's resource tracker
    (started by the first spawn and kept, by design, for the life of this process)."""
    out = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if "resource_tracker" in " ".join(proc.cmdline()):
                continue
        except psutil.NoSuchProcess:
            continue
        out.add(proc.pid)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.distributed
@pytest.mark.slow
def test_local_cluster_bounded_memory_progress_and_shutdown_on_error(
    big_zarr: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 300 * 10**6
    cfg = ComputeConfig(
        workers=2,
        memory_limit="300MB",
        min_cluster_bytes=0,
        dashboard_address=":0",
        progress_every_s=0.25,
        local_directory=tmp_path / "spill",
    )
    x = da.from_zarr(str(big_zarr))
    assert x.nbytes > limit and x.chunksize == BLOCK
    before = _children()
    worker_pids: list[int] = []
    with (  # noqa: PT012
        caplog.at_level(logging.INFO, logger="twins.compute"),
        pytest.raises(RuntimeError, match="stop here"),
        dask_client(cfg, input_bytes=x.nbytes) as session,
    ):
        assert session.mode == "local" and session.client is default_client()
        info = session.client.scheduler_info()["workers"]
        assert len(info) == 2
        assert {w["memory_limit"] for w in info.values()} == {limit}
        for w in info.values():  # workers spill under compute.local_directory
            assert Path(w["local_directory"]).parent.parent == tmp_path / "spill"
        worker_pids = list(session.client.run(os.getpid).values())
        # Sums of integers below 2**53 are exact in float64, so the reduction must equal
        # the closed form exactly: sum_i (i * COLS + j) = COLS * R(R-1)/2 + R * j.
        col = x.sum(axis=0).compute()
        expected = COLS * ROWS * (ROWS - 1) / 2 + ROWS * np.arange(COLS, dtype="f8")
        np.testing.assert_array_equal(col, expected)
        assert float(x.sum().compute()) == (ROWS * COLS) * (ROWS * COLS - 1) / 2
        # No worker was restarted for exceeding its limit (same processes throughout).
        assert sorted(session.client.run(os.getpid).values()) == sorted(worker_pids)
        time.sleep(0.6)  # let the progress thread see the cluster idle
        raise RuntimeError("stop here")
    text = caplog.text
    assert "dask: local cluster at tcp://" in text and "2 workers, 2 threads" in text
    assert "memory limit 286.10 MiB per worker" in text and "/status" in text
    assert "tasks done (100 %)" in text and "2 workers, memory" in text
    # Everything the context started is gone: workers, nannies, the scheduler's loop.
    t_end = time.monotonic() + 20
    while (_children() - before or any(psutil.pid_exists(p) for p in worker_pids)) and (
        time.monotonic() < t_end
    ):
        time.sleep(0.2)
    assert not _children() - before
    assert not [p for p in worker_pids if psutil.pid_exists(p)]
    with pytest.raises(ValueError):
        default_client()


@pytest.mark.distributed
def test_no_dashboard_address_serves_no_dashboard_and_holds_no_fixed_port() -> None:
    cfg = ComputeConfig(workers=1, min_cluster_bytes=0, dashboard_address=None)
    with dask_client(cfg, input_bytes=1) as session:
        scheduler = session.client.cluster.scheduler  # type: ignore[union-attr]
        port = scheduler.http_server.port
        assert port != 8787
        status = urllib.request.Request(f"http://127.0.0.1:{port}/status")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(status, timeout=10)
        assert info.value.code == 404  # the dashboard's page is not there
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.read() == b"ok"  # the health route is


@pytest.mark.distributed
def test_address_mode_uses_a_running_scheduler_and_leaves_it_running(
    external_scheduler: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = ComputeConfig(
        mode="address", address=external_scheduler.scheduler_address, progress_every_s=0.1
    )
    x = da.arange(200_000, chunks=20_000, dtype="f8")
    with (
        caplog.at_level(logging.INFO, logger="twins.compute"),
        dask_client(cfg, input_bytes=1) as session,  # the size threshold does not apply
    ):
        assert session.mode == "address"
        assert session.client.scheduler.address == external_scheduler.scheduler_address
        # 0 + 1 + ... + (n - 1), exact in float64 (below 2**53).
        assert float((x * 1.0).sum().compute()) == 200_000 * 199_999 / 2
        time.sleep(0.3)
    assert f"address cluster at {external_scheduler.scheduler_address}" in caplog.text
    assert len(external_scheduler.scheduler_info["workers"]) == 1
    assert external_scheduler.status.name == "running"
    with pytest.raises(ValueError):
        default_client()


@pytest.mark.distributed
def test_a_scheduler_that_cannot_count_tasks_still_gets_worker_lines(
    external_scheduler: LocalCluster,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def refuse(self: Client, plugin: object, name: str | None = None) -> None:
        raise ModuleNotFoundError("No module named 'twins'")  # a scheduler without twins

    monkeypatch.setattr(Client, "register_plugin", refuse)
    cfg = ComputeConfig(
        mode="address", address=external_scheduler.scheduler_address, progress_every_s=0.1
    )
    line = re.compile(r"dask: 1 workers, memory [^;]+, spilled [^;]+; \d+ s")
    seen = tmp_path / "seen"
    with caplog.at_level(logging.INFO, logger="twins.compute"), dask_client(cfg) as session:
        # The task runs until a line is logged: "busy" comes from the workers' heartbeats,
        # whose timing depends on the machine's load, so no fixed duration is assumed.
        task = session.client.submit(_wait_for, str(seen), 120.0, pure=False)
        deadline = time.monotonic() + 120.0  # a bound, not a timing
        while not line.search(caplog.text) and time.monotonic() < deadline:
            time.sleep(0.1)
        seen.touch()
        assert task.result() is True
    text = caplog.text
    assert "the scheduler cannot count tasks (No module named 'twins')" in text
    assert line.search(text) and "tasks done" not in text


def _wait_for(path: str, bound_s: float) -> bool:
    """Sleep until ``path`` exists (True) or ``bound_s`` seconds pass (False)."""
    deadline = time.monotonic() + bound_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_unreachable_address_is_a_one_line_config_error_naming_it() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    cfg = ComputeConfig(mode="address", address=address, connect_timeout_s=0.5)
    with pytest.raises(ConfigError) as err, dask_client(cfg):
        pass
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"compute.address {address}: no dask scheduler answered within 0.5 s")


def test_small_input_runs_on_the_threaded_scheduler_with_progress_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = ComputeConfig(workers=2, min_cluster_bytes="1GiB", progress_every_s=1e-6)
    assert choose_mode(cfg, 2**30 - 1) == "threads" and choose_mode(cfg, 2**30) == "local"
    assert choose_mode(cfg, None) == "local"
    x = da.ones((100, 100), chunks=(10, 100))
    with (
        caplog.at_level(logging.INFO, logger="twins.compute"),
        dask_client(cfg, input_bytes=x.nbytes) as session,
    ):
        assert session.mode == "threads" and session.client is None
        assert dask.config.get("scheduler") == "threads"
        assert dask.config.get("num_workers") == 2
        with pytest.raises(ValueError):
            default_client()
        assert float(x.sum().compute()) == 10_000.0
    assert "threaded scheduler in this process (2 threads; input 78.12 kiB" in caplog.text
    assert "< compute.min_cluster_bytes 1.00 GiB" in caplog.text
    done = re.findall(r"dask: (\d+)/(\d+) tasks done \((\d+) %\)", caplog.text)
    assert done[-1][0] == done[-1][1] and done[-1][2] == "100"  # the last line: all done
    assert int(done[-1][1]) >= 10  # at least one task per chunk
    assert len(done) == len(set(done))  # no line repeated
    assert dask.config.get("scheduler", None) != "threads"


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        (
            "compute:\n  memory_limit: lots\n",
            "compute.memory_limit: Value error, expected a size such as '300MB', '4GiB' or a "
            "number of bytes, got 'lots'",
        ),
        (
            "compute:\n  memory_limit: 1000\n",
            "compute.memory_limit: Value error, 1000 bytes is below the 128 MiB a dask worker "
            "needs",
        ),
        ("compute:\n  mode: address\n", "compute: Value error, mode 'address' needs"),
        (
            "compute:\n  address: tcp://h:8786\n",
            "compute: Value error, compute.address 'tcp://h:8786' is only used with mode",
        ),
        (
            "compute:\n  mode: address\n  address: 'h; rm -rf /'\n",
            "compute.address: Value error, expected a scheduler address",
        ),
        ("compute:\n  min_cluster_bytes: -1\n", "compute.min_cluster_bytes: Value error"),
    ],
)
def test_bad_compute_values_are_one_line_config_errors(
    tmp_path: Path, yaml: str, expected: str
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError) as err:
        load_config(path, [])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and expected in msg


def test_sizes_are_read_like_dask_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("compute:\n  memory_limit: 4GiB\n  min_cluster_bytes: 1.5 GB\n")
    cfg = load_config(path, []).compute
    assert cfg.memory_limit == 4 * 2**30 and cfg.min_cluster_bytes == 1_500_000_000
    assert ComputeConfig(memory_limit="auto").memory_limit == "auto"


def test_loading_a_config_imports_no_dask() -> None:
    # compute: is validated on every config load; dask.distributed costs ~1 s to import.
    code = "import sys, twins.config; print([m for m in sys.modules if m.startswith('dask')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
