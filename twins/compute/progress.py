"""Progress of dask computations as log lines, for batch jobs (no progress bars).

Two sources, one line format:

- on a dask.distributed cluster, :class:`TaskCounter` (a scheduler plugin) counts task
  transitions on the scheduler and :class:`ClusterProgress` (a thread in the client process)
  reads the counts and the workers' memory every few seconds and logs one line while tasks
  are pending;
- on the threaded scheduler, :class:`ThreadsProgress` (a dask local callback) logs the
  same kind of line from the task-completion hook.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dask.callbacks import Callback
from dask.utils import format_bytes
from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["ClusterProgress", "TaskCounter", "ThreadsProgress", "read_counts"]

log = logging.getLogger(__name__)

#: Task states in which a task still has to run.
PENDING = frozenset({"waiting", "queued", "processing", "no-worker"})


class TaskCounter(SchedulerPlugin):
    """Scheduler plugin counting finished, failed, pending and running tasks.

    Counts are maintained from transitions, O(1) per transition, so reading them is cheap
    whatever the size of the graph. Only transitions after registration are seen.

    Attributes:
        done: Tasks that went from pending to ``memory`` (computed).
        erred: Tasks that went to ``erred``.
        pending: Tasks now waiting, queued, processing or without a worker.
        processing: Tasks now running on (or assigned to) a worker.
    """

    name = "twins-progress"

    def __init__(self) -> None:
        self.done = 0
        self.erred = 0
        self.pending = 0
        self.processing = 0

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """Update the counts for one task going from ``start`` to ``finish``."""
        was, now = start in PENDING, finish in PENDING
        self.pending += int(now) - int(was)
        self.processing += int(finish == "processing") - int(start == "processing")
        if was and finish == "memory":
            self.done += 1
        elif finish == "erred":
            self.erred += 1


def read_counts(dask_scheduler: Any) -> dict[str, int] | None:
    """The :class:`TaskCounter` counts of a scheduler (run there by ``run_on_scheduler``).

    Args:
        dask_scheduler: The scheduler (passed by dask).

    Returns:
        ``{"done", "erred", "pending", "processing"}``, or None when no counter is registered.
    """
    plugin = dask_scheduler.plugins.get(TaskCounter.name)
    if plugin is None:
        return None
    return {
        "done": plugin.done,
        "erred": plugin.erred,
        "pending": plugin.pending,
        "processing": plugin.processing,
    }


def _executing(worker: Any) -> int:
    return int(worker.get("metrics", {}).get("task_counts", {}).get("executing", 0))


def _fraction(done: int, pending: int) -> str:
    total = done + pending
    return f"{done}/{total} tasks done ({100.0 * done / total:.0f} %)" if total else "no tasks"


class ClusterProgress:
    """Log a progress line every ``every_s`` seconds while a cluster has pending tasks.

    The line reads, e.g. ``dask: 120/480 tasks done (25 %), 2 running, 0 failed; 2 workers,
    memory 410 MiB of 600 MiB, spilled 0 B; 12 s``. The "done" count restarts whenever the
    cluster becomes busy after being idle, so each computation reports its own share.

    Args:
        client: A connected client.
        every_s: Seconds between lines.
    """

    def __init__(self, client: Client, every_s: float) -> None:
        self._client = client
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twins-dask-progress", daemon=True)
        self._counted = False
        self.lines = 0

    def start(self) -> None:
        """Register the task counter on the scheduler and start the logging thread.

        A scheduler that cannot load :class:`TaskCounter` (one running without twins
        installed) still gets worker and memory lines, without task counts.
        """
        try:
            self._client.register_plugin(TaskCounter(), name=TaskCounter.name)
            self._counted = True
        except Exception as exc:  # the remote scheduler's error, whatever it is
            log.warning(
                "dask: the scheduler cannot count tasks (%s); progress lines show workers "
                "and memory only",
                " ".join(str(exc).split())[:200],
            )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for it; a line in progress completes)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, 2 * self._every_s))

    def _run(self) -> None:
        t_busy: float | None = None  # start of the current busy period, None while idle
        done0 = done = 0
        while not self._stop.wait(self._every_s):
            try:
                counts = self._client.run_on_scheduler(read_counts) if self._counted else None
                info = self._client.scheduler_info()
            except Exception as exc:  # a lost scheduler must not kill the caller's work
                if self._stop.is_set():
                    return
                log.warning("dask: cannot read progress (%s)", " ".join(str(exc).split())[:200])
                continue
            if counts is not None:
                busy = counts["pending"] > 0
            else:
                busy = any(_executing(w) for w in info.get("workers", {}).values())
            if busy and t_busy is None:
                t_busy, done0 = time.monotonic(), done
            if t_busy is not None:  # busy, or the last line of a busy period
                log.info(self.format(counts, info, done0, time.monotonic() - t_busy))
                self.lines += 1
            if counts is not None:
                done = counts["done"]
            if not busy:
                t_busy = None

    @staticmethod
    def format(counts: dict[str, int] | None, info: Any, done0: int, elapsed_s: float) -> str:
        """One progress line.

        Args:
            counts: :func:`read_counts` output, or None when tasks are not counted.
            info: ``Client.scheduler_info()`` output (its ``workers`` mapping).
            done0: Tasks done before the current busy period.
            elapsed_s: Seconds since the busy period began.

        Returns:
            The line (without the logger's prefix).
        """
        workers = info.get("workers", {}).values()
        used = sum(int(w.get("metrics", {}).get("memory", 0)) for w in workers)
        limit = sum(int(w.get("memory_limit") or 0) for w in workers)
        spilled = sum(
            int(w.get("metrics", {}).get("spilled_bytes", {}).get("disk", 0)) for w in workers
        )
        parts = []
        if counts is not None:
            parts.append(
                f"{_fraction(counts['done'] - done0, counts['pending'])}, "
                f"{counts['processing']} running, {counts['erred']} failed"
            )
        parts.append(
            f"{len(workers)} workers, memory {format_bytes(used)} of {format_bytes(limit)}, "
            f"spilled {format_bytes(spilled)}"
        )
        return f"dask: {'; '.join(parts)}; {elapsed_s:.0f} s"


class ThreadsProgress(Callback):
    """Log a progress line at most every ``every_s`` seconds on dask's local schedulers.

    Used as a context manager (``with ThreadsProgress(10): ...``); lines read
    ``dask: 12/48 tasks done (25 %); 3 s`` and a last line when a computation ends after
    having logged at least once.

    Args:
        every_s: Minimum seconds between lines.
    """

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self._every_s = every_s
        self._lock = threading.Lock()
        self._total = 0
        self._done = 0
        self._t0 = 0.0
        self._last = 0.0
        self._logged = False
        self._logged_done = -1
        self.lines = 0

    def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
        with self._lock:
            self._total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            self._done = len(state["finished"])
            self._t0 = self._last = time.monotonic()
            self._logged = False

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        with self._lock:
            self._done += 1
            now = time.monotonic()
            if now - self._last < self._every_s:
                return
            self._last = now
            self._log(now)

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        with self._lock:
            if self._logged and self._logged_done != self._done:
                self._log(time.monotonic())

    def _log(self, now: float) -> None:
        pending = max(self._total - self._done, 0)
        log.info("dask: %s; %.0f s", _fraction(self._done, pending), now - self._t0)
        self._logged = True
        self._logged_done = self._done
        self.lines += 1
