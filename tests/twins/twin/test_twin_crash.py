"""Crash safety of the twin store: SIGKILL a writer at random instants and at every commit step."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from twins.twin import TwinStore

WRITER = Path(__file__).with_name("_twin_writer.py")


def _load_writer() -> ModuleType:
    name = "twins_tests_twin_writer"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, WRITER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


w = _load_writer()


def _run_writer(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )


def _leftovers(directory: Path, committed: int) -> list[str]:
    found = [f"staging/{name}" for name in os.listdir(directory / "staging")]
    for name in os.listdir(directory / "versions"):
        if int(name[1:]) > committed:
            found.append(f"versions/{name}")
    for name in os.listdir(directory / "history"):
        if not name[0].isdigit() or int(name.split("-")[0]) > committed:
            found.append(f"history/{name}")
    return found


def test_random_sigkill_during_update_loop(tmp_path: Path, dir_snapshot) -> None:
    """Kill a writer that commits back to back at 36 random instants; check the twin each time."""
    directory = tmp_path / "twin"
    TwinStore.init(directory, kind="test")
    rng = random.Random(20240917)
    trials = 36
    with_leftovers = 0
    progressed = 0
    start = time.monotonic()
    for _trial in range(trials):
        before = TwinStore.open(directory).state.version
        proc = _run_writer("loop", str(directory))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # Kill instants in the writer's own time, not the wall clock's (on a loaded machine a
        # fixed 0-60 ms window may end before the first update is under way): let it commit
        # 0, 1 or 2 updates, then kill it a random fraction of one update's duration into the
        # next one.
        tic = time.monotonic()
        interval = 0.06
        for _ in range(rng.choice((0, 0, 1, 2))):
            assert proc.stdout.readline().startswith("committed")
            interval, tic = time.monotonic() - tic, time.monotonic()
        time.sleep(rng.uniform(0.0, interval))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

        n = w.check_twin(directory)  # consistent before any recovery
        assert n >= before
        progressed += n > before
        with_leftovers += bool(_leftovers(directory, n))

        store = TwinStore.open(directory)
        # Retrying the interrupted update succeeds (lock was released by the kernel, recovery
        # cleans up), without waiting.
        noop, record = w.do_update(store, n + 1, wait=False)
        assert not noop and record.version == n + 1
        assert _leftovers(directory, n + 1) == []
        # Retrying an already-committed update is a no-op that writes nothing.
        snap = dir_snapshot(directory)
        noop, record = w.do_update(store, n + 1, wait=False)
        assert noop and record.version == n + 1
        if n:
            noop, record = w.do_update(store, n, wait=False)
            assert noop and record.version == n
        assert dir_snapshot(directory) == snap
        assert w.check_twin(directory) == n + 1
    elapsed = time.monotonic() - start
    # The kills landed while the writer was busy: trials that waited for a commit progressed,
    # and some kills left an update half-done behind.
    assert progressed >= 3, progressed
    assert with_leftovers >= 1, with_leftovers
    print(
        f"{trials} kills in {elapsed:.1f} s; {with_leftovers} left uncommitted leftovers; "
        f"final version {TwinStore.open(directory).state.version}"
    )


@pytest.mark.parametrize(
    ("point", "committed"),
    [("staged", False), ("renamed", False), ("history", False), ("committed", True)],
)
def test_sigkill_at_each_commit_step(tmp_path: Path, point: str, committed: bool) -> None:
    """A kill at each step of the commit leaves the twin as before or fully updated."""
    directory = tmp_path / "twin"
    store = TwinStore.init(directory, kind="test")
    w.do_update(store, 1)
    proc = _run_writer("fault", str(directory), point)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    n = w.check_twin(directory)
    assert n == (2 if committed else 1)
    if not committed:
        assert _leftovers(directory, n) != []  # the half-done update is on disk, but invisible
    noop, record = w.do_update(store, 2, wait=False)
    assert noop is committed and record.version == 2
    assert _leftovers(directory, 2) == []
    assert w.check_twin(directory) == 2


def test_sigkill_during_init_leaves_no_twin(tmp_path: Path) -> None:
    directory = tmp_path / "twin"
    proc = _run_writer("init-fault", str(directory))
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not directory.exists()
    assert any(p.name.startswith(".twin.init-") for p in tmp_path.iterdir())
    TwinStore.init(directory, kind="test")
    assert w.check_twin(directory) == 0
