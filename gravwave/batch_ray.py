"""Batch cleaning on Ray: one :class:`~gravwave.batch.SegmentWorker` actor per worker, each
taking the next segment as it finishes one.

A local Ray is started quietly with one CPU per worker (no dashboard, no usage stats, no
token authentication, worker logs kept in Ray's session directory), or an existing cluster
is joined with ``address`` (or ``RAY_ADDRESS``, as :mod:`twins.train.ray_backend` does). The
cleaner travels through Ray's object store, so only the segment files and the output
directory must be on a file system every node sees. Each actor pins torch to one intra-op
thread, so the output equals a serial run's.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import ray
from ray.exceptions import RayError

from gravwave.batch import (
    BatchSettings,
    Progress,
    SegmentJob,
    SegmentOutcome,
    SegmentWorker,
)
from twins.errors import TwinsError

__all__ = ["QUIET_RAY_ENV", "RayRun", "run_ray"]

log = logging.getLogger(__name__)

#: Environment that keeps Ray quiet on a local start (reference/stack.md).
QUIET_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "1",
}


@dataclass(frozen=True)
class RayRun:
    """Outcomes of a Ray run and where its time went.

    Attributes:
        outcomes: One per job, in job order.
        startup_s: Starting or joining Ray and starting the workers (imports, cleaner) [s].
        clean_s: From the first segment handed out to the last one back [s].
    """

    outcomes: list[SegmentOutcome]
    startup_s: float
    clean_s: float


def _start(workers: int, address: str | None) -> bool:
    """Start a local Ray or join ``address``; True if this call started it."""
    for k, v in QUIET_RAY_ENV.items():
        os.environ.setdefault(k, v)
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            # "local": a new Ray even where `ray start` left a cluster to find
            ray.init(
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                logging_level="ERROR",
                log_to_driver=False,
            )
    except Exception as exc:  # noqa: BLE001 - ray raises many kinds
        where = address or "a local Ray"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TwinsError(
            f"cannot start or join {where}: {first}",
            "check --address, or start a cluster with `ray start --head`",
        ) from None
    return True


def _died(job: SegmentJob, exc: BaseException) -> SegmentOutcome:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return SegmentOutcome(
        source=str(job.source),
        status="failed",
        error=f"{job.source.name}: its Ray worker died ({type(exc).__name__}: {first})"[:400],
        error_kind="unexpected",
    )


def run_ray(
    jobs: Sequence[SegmentJob],
    settings: BatchSettings,
    cleaner_data: bytes,
    workers: int,
    address: str | None = None,
    progress: Progress | None = None,
) -> RayRun:
    """Clean the segments with ``workers`` Ray actors (one CPU each).

    Args:
        jobs: The segments.
        settings: Shared settings.
        cleaner_data: Bytes of the cleaner file.
        workers: Actors, at most one segment each at a time.
        address: Existing cluster (``host:port`` or ``ray://host:10001``); default
            ``$RAY_ADDRESS``, else a local Ray with ``workers`` CPUs.
        progress: Called as each segment finishes.

    Returns:
        The outcomes (a worker that dies fails its segment and is replaced) and timings.

    Raises:
        TwinsError: Ray cannot be started or joined, or the workers cannot start.
    """
    tic = time.perf_counter()
    address = address or os.environ.get("RAY_ADDRESS") or None
    started = _start(workers, address)
    try:
        actor_cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(SegmentWorker)
        data_ref = ray.put(cleaner_data)
        actors = [actor_cls.remote(settings, data_ref) for _ in range(workers)]
        try:
            ray.get([a.ready.remote() for a in actors])
        except RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            raise TwinsError(
                f"the Ray workers could not start: {type(cause).__name__}: {first}",
                "is twins installed on every node of the cluster?",
            ) from None
        startup = time.perf_counter() - tic
        log.info("%d Ray worker(s) ready in %.1f s", workers, startup)
        t_clean = time.perf_counter()
        results: dict[int, SegmentOutcome] = {}
        queue = deque(enumerate(jobs))
        idle = list(actors)
        pending: dict[ray.ObjectRef, tuple[object, int]] = {}
        while queue or pending:
            while idle and queue:
                actor = idle.pop()
                i, job = queue.popleft()
                pending[actor.clean.remote(job)] = (actor, i)  # type: ignore[attr-defined]
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                actor, i = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except RayError as exc:  # the process died (a crash in a reader, OOM)
                    outcome = _died(jobs[i], exc)
                    actor = actor_cls.remote(settings, data_ref)
                results[i] = outcome
                idle.append(actor)
                if progress is not None:
                    progress(outcome, len(results), len(jobs))
        clean_s = time.perf_counter() - t_clean
    finally:
        if started:
            ray.shutdown()
    return RayRun([results[i] for i in range(len(jobs))], startup, clean_s)
