"""twins.track.register_file against a real embedded MLflow store: versions, artifacts, tags,
and one-line TrackingErrors for a missing file, a malformed URI and a dead server."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from twins.track import HTTP_ENV_DEFAULTS, ModelVersion, TrackingError, register_file


@pytest.fixture
def http_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the registry apply its own HTTP defaults, and undo them after the test."""
    for key in HTTP_ENV_DEFAULTS:
        monkeypatch.setenv(key, "0")
        monkeypatch.delenv(key)


def test_register_file_twice_gives_two_versions(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/db/mlflow.db"
    weights = tmp_path / "cleaner.pt"
    weights.write_bytes(b"first")
    one = register_file(
        uri, "reg-test", "my-cleaner", weights, run_name="twin-a", tags={"twin_version": 3}
    )
    weights.write_bytes(b"second")
    two = register_file(uri, "reg-test", "my-cleaner", weights, artifact_path="cleaner")
    assert isinstance(one, ModelVersion) and (one.name, one.version) == ("my-cleaner", "1")
    assert two.version == "2" and two.source.endswith("/cleaner")
    client = MlflowClient(uri)
    mv = client.get_model_version("my-cleaner", "1")
    assert mv.run_id == one.run_id and mv.tags == {"twin_version": "3"}
    run = client.get_run(one.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "twin-a"
    assert run.data.tags["twin_version"] == "3"
    # each version's own bytes, beside the DB as prepare_store arranges
    art = tmp_path / "db" / "mlartifacts"
    assert (art / one.run_id / "artifacts" / "model" / "cleaner.pt").read_bytes() == b"first"
    assert (art / two.run_id / "artifacts" / "cleaner" / "cleaner.pt").read_bytes() == b"second"


def test_register_file_errors_are_one_line(tmp_path: Path, http_defaults: None) -> None:
    with pytest.raises(TrackingError, match=r"cannot register .*missing\.pt: no such file"):
        register_file(f"sqlite:///{tmp_path}/m.db", "e", "m", tmp_path / "missing.pt")
    f = tmp_path / "c.pt"
    f.write_bytes(b"x")
    with pytest.raises(TrackingError, match="malformed MLflow tracking URI 'http://'"):
        register_file("http://", "e", "m", f)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(TrackingError) as info:
        register_file(f"http://127.0.0.1:{port}", "e", "m", f)
    assert "\n" not in str(info.value) and f"127.0.0.1:{port}" in str(info.value)
    assert time.perf_counter() - started < 15  # the fail-fast HTTP defaults (2 retries)
    assert not (tmp_path / "mlruns").exists()
