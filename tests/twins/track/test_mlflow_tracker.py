"""twins.track against real MLflow stores: embedded sqlite, a dead port, and a real server."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from twins.track import (
    HTTP_ENV_DEFAULTS,
    NullTracker,
    Tracker,
    TrackingError,
    load_registered_model,
    prepare_store,
    resolve_tracking_uri,
)
from twins.track import mlflow_tracker as mt

LOGGER = "twins.track.mlflow_tracker"
REPO = Path(__file__).resolve().parents[3]


def tiny_model() -> torch.nn.Module:
    """Three layers of stock torch classes, so the pickle loads anywhere."""
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and text in r.getMessage()
    ]


@pytest.fixture
def http_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the tracker apply its own HTTP defaults, and undo them after the test."""
    for key in HTTP_ENV_DEFAULTS:
        monkeypatch.setenv(key, "0")  # records "absent" (or the user's value) for teardown
        monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A prepared embedded store shared by this module (DB creation costs ~1.5 s)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/db/mlflow.db"
    prepare_store(uri, "twins-test")
    return uri, root / "db"


# --------------------------------------------------------------------------- URIs


def test_resolve_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env-host:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://env-host:5000"
    assert resolve_tracking_uri("http://cfg:1", tmp_path) == "http://cfg:1"
    # relative sqlite paths are pinned to the launching directory
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri("sqlite:///rel/m.db", Path("x")) == (
        f"sqlite:///{tmp_path.resolve()}/rel/m.db"
    )
    assert resolve_tracking_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"


@pytest.mark.parametrize("uri", ["bogus://nowhere", "http://", "sqlite:relative.db", "  "])
def test_prepare_store_rejects_malformed_uri(uri: str) -> None:
    with pytest.raises(TrackingError) as info:
        prepare_store(uri, "e")
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    assert "tracking" in message.lower() or "uri" in message.lower()
    if uri.strip():
        assert uri in message


def test_prepare_store_unreachable_server_fails_fast_and_redacts(http_defaults: None) -> None:
    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    started = time.perf_counter()
    with pytest.raises(TrackingError) as info:
        prepare_store(uri, "e")
    # Bounds something huge: with MLflow's own HTTP defaults (7 retries, backoff factor 2)
    # one refused call backs off for minutes (sleeps of 2, 4, ..., 64 s: over 120 s); with
    # HTTP_ENV_DEFAULTS (2 retries, factor 1) about 3 s. 15 s sits between, 5x from each.
    assert time.perf_counter() - started < 15
    message = str(info.value)
    assert "s3cret" not in message and "alice:***@127.0.0.1" in message
    assert info.value.hint


def test_prepare_store_layout(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/deep/dir/m.db"
    exp_id = prepare_store(uri, "layout")
    assert (tmp_path / "deep/dir/m.db").is_file()
    exp = MlflowClient(uri).get_experiment(exp_id)
    assert exp.name == "layout"
    assert exp.artifact_location == (tmp_path / "deep/dir/mlartifacts").as_uri()
    assert prepare_store(uri, "layout") == exp_id  # idempotent
    custom = prepare_store(uri, "custom", artifact_root=tmp_path / "art")
    assert MlflowClient(uri).get_experiment(custom).artifact_location == (
        (tmp_path / "art").as_uri()
    )


# --------------------------------------------------------------------------- a full run


def test_run_round_trip(
    store: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uri, dbdir = store
    monkeypatch.chdir(tmp_path)  # nothing may land in the cwd (MLflow's ./mlruns default)
    caplog.set_level(logging.INFO, logger=LOGGER)
    model = tiny_model()
    with Tracker(uri, "twins-test", run_name="round-trip", tags={"twins.task": "toy"}) as t:
        run_id = t.run_id
        assert run_id is not None
        t.log_params(
            {
                "lr": 0.01,
                "model": {"width": 8, "act": {"kind": "tanh"}},
                "long": "x" * 7000,
                "path": Path("/data/in.nc"),
                "empty": {},
            }
        )
        t.log_params({"lr": 0.01})  # same value again: skipped quietly
        t.log_params({"lr": 0.5})  # immutable in MLflow: warned and skipped
        losses = [1.0 / (s + 1) for s in range(5)]
        for step, loss in enumerate(losses):
            t.log_metrics({"train/loss": loss, "lr": torch.tensor(0.01), "bad": "n/a"}, step)
        t.flush()
        for step in range(5, 130):  # 250 more values: auto-flush at 200 before end()
            t.log_metrics({"a": float(step), "b": -float(step)}, step)
        client = MlflowClient(uri)
        assert len(client.get_metric_history(run_id, "a")) >= 95
        t.set_tags({"stage": "test", "weird key[0]": "ok"})
        t.log_text("seed: 0\n", "config.yaml")
        t.log_dict({"scores": {"nse": 0.5}, "when": Path("/x")}, "report/summary.json")
        t.log_dict({"a": [1, 2], "b": {"c": "d"}}, "report/summary.yaml")
        version = t.log_model(model, "twins-test-model", input_example=torch.zeros(2, 3))
        assert not t.degraded

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "round-trip"
    params = run.data.params
    assert params["lr"] == "0.01"
    assert params["model.width"] == "8" and params["model.act.kind"] == "tanh"
    assert params["path"] == "/data/in.nc" and params["empty"] == "{}"
    assert len(params["long"]) == 6000 and params["long"].endswith("...")
    assert warnings_about(caplog, "immutable")
    assert warnings_about(caplog, "'bad' skipped")
    assert run.data.tags["twins.task"] == "toy" and run.data.tags["stage"] == "test"
    assert run.data.tags["weird key_0_"] == "ok"

    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == list(
        enumerate(losses)
    )
    # 0.01 logged and read back as a float64: exact; approx only guards the representation
    assert [m.value for m in client.get_metric_history(run_id, "lr")] == [pytest.approx(0.01)] * 5
    assert sorted(m.step for m in client.get_metric_history(run_id, "b")) == list(range(5, 130))
    assert "bad" not in run.data.metrics

    # artifacts live next to the DB, as prepare_store arranged
    art = dbdir / "mlartifacts" / run_id / "artifacts"
    assert (art / "config.yaml").read_text() == "seed: 0\n"
    assert json.loads((art / "report/summary.json").read_text()) == {
        "scores": {"nse": 0.5},
        "when": "/x",
    }
    assert yaml.safe_load((art / "report/summary.yaml").read_text()) == {
        "a": [1, 2],
        "b": {"c": "d"},
    }
    assert {a.path for a in client.list_artifacts(run_id)} >= {"config.yaml", "report"}

    # the registered model, through the registry client
    assert version is not None
    mv = client.get_model_version("twins-test-model", version)
    assert mv.status == "READY" and mv.run_id == run_id
    logged = client.get_logged_model(t.model_uri.removeprefix("models:/"))
    assert logged.experiment_id == t.experiment_id  # not MLflow's fluent default experiment
    assert logged.artifact_location.startswith((dbdir / "mlartifacts").as_uri())
    x = torch.linspace(-1, 1, 12).reshape(4, 3)
    for ref in ("latest", version, int(version)):
        loaded = load_registered_model(uri, "twins-test-model", ref)
        assert type(loaded) is torch.nn.Sequential
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # log_model restored the fluent state

    with pytest.raises(TrackingError, match="no-such-model"):
        load_registered_model(uri, "no-such-model")


def test_context_manager_marks_failed_run(store: tuple[str, Path]) -> None:
    uri, _ = store
    with pytest.raises(RuntimeError, match="boom"), Tracker(uri, "twins-test") as t:
        t.log_metrics({"x": 1.0}, 0)
        raise RuntimeError("boom")
    assert t.run_id is not None
    run = MlflowClient(uri).get_run(t.run_id)
    assert run.info.status == "FAILED" and run.data.metrics == {"x": 1.0}  # flushed at end
    t.end()  # idempotent after the fact
    with pytest.raises(ValueError, match="status"):
        t.end("DONE")


def test_child_run_and_new_experiment(store: tuple[str, Path]) -> None:
    uri, _ = store
    with Tracker(uri, "twins-test") as parent:
        child = Tracker(uri, "twins-test-other", parent_run_id=parent.run_id)
        child.start()
        assert child.start() == child.run_id  # idempotent
        child.end("KILLED")
    run = MlflowClient(uri).get_run(child.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id


def test_null_and_disabled_trackers_do_nothing(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for t in (
        NullTracker(),
        NullTracker("sqlite:///x.db", "e"),
        Tracker(f"sqlite:///{tmp_path}/never.db", "e", enabled=False),
    ):
        with t:
            assert t.start() is None
            t.log_params({"a": 1})
            t.log_metrics({"m": 1.0}, 0)
            t.flush()
            t.set_tags({"a": "b"})
            t.log_text("x", "x.txt")
            t.log_dict({"a": 1}, "a.json")
            t.log_artifact(tmp_path)
            t.log_figure(object(), "f.png")
            assert t.log_model(tiny_model(), "m") is None
        assert t.run_id is None and not t.degraded
    assert not caplog.records
    assert not (tmp_path / "never.db").exists()


# --------------------------------------------------------------------------- outages


def test_dead_server_never_raises(
    http_defaults: None, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    started = time.perf_counter()
    t = Tracker(f"http://127.0.0.1:{free_port()}", "e", run_name="r")
    with t:
        assert t.run_id is None
        for step in range(300):  # a training loop's worth of calls
            t.log_metrics({"loss": 1.0}, step)
        t.log_params({"a": {"b": 1}})
        t.set_tags({"k": "v"})
        t.log_text("x", "x.txt")
        t.log_dict({"a": 1}, "a.yaml")
        t.log_artifact(tmp_path)
        assert t.log_model(tiny_model(), "m") is None
    elapsed = time.perf_counter() - started
    assert t.degraded
    assert len(warnings_about(caplog, "MLflow start failed")) == 1
    # the tracker gives up at its first failure (no retry storm): seconds, against the
    # minutes per call of MLflow's defaults (see above); 10 s leaves a 3x margin
    assert elapsed < 10, f"took {elapsed:.1f} s"
    for key, value in HTTP_ENV_DEFAULTS.items():
        assert os.environ[key] == value


def test_user_http_settings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "3")
    Tracker("https://example.invalid", "e")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


def test_backend_failing_mid_run(
    store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    uri, _ = store
    caplog.set_level(logging.WARNING, logger=LOGGER)
    t = Tracker(uri, "twins-test")
    assert t.start() is not None
    client = t._get_client()
    real_log_batch = client.log_batch
    calls = []

    def broken(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise OSError("attempt to write a readonly database")

    monkeypatch.setattr(client, "log_batch", broken)
    monkeypatch.setattr(client, "log_text", broken)
    trained = 0
    for step in range(10):  # the "training" goes on
        t.log_metrics({"loss": 1.0 / (step + 1)}, step)
        t.flush()
        trained += 1
    t.log_text("x", "x.txt")
    assert trained == 10 and t.degraded
    assert len(warnings_about(caplog, "MLflow log_metrics failed")) == 1
    assert "readonly database" in warnings_about(caplog, "log_metrics failed")[0]
    # after FAILURES_BEFORE_PAUSE failures the backend is left alone for PAUSE_S
    assert len(calls) == mt.FAILURES_BEFORE_PAUSE
    assert len(warnings_about(caplog, "consecutive failures")) == 1
    assert not warnings_about(caplog, "log_text failed")  # skipped while paused

    # the store comes back and the pause is over: logging resumes
    monkeypatch.setattr(client, "log_batch", real_log_batch)
    t._paused_until = 0.0
    t.log_metrics({"loss": 0.01}, 99)
    t.end()
    run = MlflowClient(uri).get_run(t.run_id)
    assert run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(t.run_id, "loss")] == [
        (99, 0.01)
    ]


def test_log_model_failure_returns_none(
    store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    uri, _ = store
    caplog.set_level(logging.WARNING, logger=LOGGER)
    import mlflow.pytorch

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(mlflow.pytorch, "log_model", broken)
    with Tracker(uri, "twins-test") as t:
        assert t.log_model(tiny_model(), "never-registered") is None
    assert warnings_about(caplog, "log_model failed")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert MlflowClient(uri).get_run(t.run_id).info.status == "FINISHED"


# --------------------------------------------------------------------------- processes

WRITER = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
from twins.track import Tracker
uri, name = sys.argv[1], sys.argv[2]
with Tracker(uri, "shared", run_name=name) as t:
    t.log_params({"writer": name})
    for step in range(150):
        t.log_metrics({"loss": 1.0 / (step + 1)}, step)
        if step % 10 == 9:
            t.flush()
print(t.run_id, t.degraded)
"""


def test_two_processes_share_a_prepared_sqlite_db(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/shared.db"
    prepare_store(uri, "shared")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_DISABLE_TELEMETRY": "true"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, f"w{i}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "failed" not in err, err[-2000:]
        assert out.split()[1] == "False"
    client = MlflowClient(uri)
    run_ids = {out.split()[0] for out, _ in outs}
    assert len(run_ids) == 2
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["writer"] == run.info.run_name
        assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == list(
            range(150)
        )


# --------------------------------------------------------------------------- a real server


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``mlflow server`` on a free loopback port; SIGTERM to its process group at the end."""
    port = free_port()
    log_file = (tmp_path / "server.log").open("wb")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path}/srv.db",
        "--artifacts-destination",
        str(tmp_path / "art"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            # a hang guard: the server starts in seconds; 60 s fails only if it never does
            if proc.poll() is not None or time.perf_counter() - started > 60:
                pytest.fail(
                    "mlflow server did not come up:\n"
                    + (tmp_path / "server.log").read_text()[-3000:]
                )
            time.sleep(0.25)
        logging.getLogger(__name__).info(
            "mlflow server healthy after %.1f s", time.perf_counter() - started
        )
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        log_file.close()


@pytest.mark.slow
def test_tracker_through_mlflow_server(
    mlflow_server: tuple[str, subprocess.Popen[bytes]],
    http_defaults: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, proc = mlflow_server
    caplog.set_level(logging.INFO, logger=LOGGER)
    prepare_store(url, "served")
    model = tiny_model()
    t = Tracker(url, "served", run_name="over-http")
    t.start()
    t.log_params({"opt": {"lr": 0.1}})
    for step in range(3):
        t.log_metrics({"loss": 3.0 - step}, step)
    t.log_text("hello", "notes/hello.txt")
    version = t.log_model(model, "served-model")
    t.end()
    assert not t.degraded and version == "1"

    client = MlflowClient(url)
    run = client.get_run(t.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"opt.lr": "0.1"}
    assert [
        m.value for m in sorted(client.get_metric_history(t.run_id, "loss"), key=lambda m: m.step)
    ] == [3.0, 2.0, 1.0]
    assert client.download_artifacts(t.run_id, "notes/hello.txt") and True
    x = torch.ones(2, 3)
    torch.testing.assert_close(load_registered_model(url, "served-model")(x), model(x))

    # the server goes away mid-run: nothing raises, one warning, bounded time
    t2 = Tracker(url, "served")
    t2.start()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=15)
    started = time.perf_counter()
    for step in range(5):
        t2.log_metrics({"loss": 1.0}, step)
        t2.flush()
    t2.log_text("x", "x.txt")
    t2.end()
    assert t2.degraded
    assert len(warnings_about(caplog, "log_metrics failed")) == 1
    # 6 calls to a dead server: with HTTP_ENV_DEFAULTS one bounded failure, then degraded;
    # with MLflow's defaults minutes per call (over 120 s of backoff each, see above)
    assert time.perf_counter() - started < 30
