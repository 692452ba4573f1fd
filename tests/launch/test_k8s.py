"""Kubernetes manifests validate against the Kubernetes schemas (and KubeRay's shape).

Core objects (Job, CronJob, Service, ConfigMap) are checked with ``kubernetes-validate``
in strict mode against the OpenAPI schemas it ships (offline). The RayCluster is a CRD,
which ``kubernetes-validate`` cannot check: it is checked against ``RAYCLUSTER_SCHEMA``,
a minimal JSON schema transcribed from the KubeRay ``ray.io/v1`` RayCluster docs, whose
pod templates are in turn validated as core ``PodTemplateSpec`` objects.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from twins.errors import ConfigError
from twins.launch.k8s import (
    INTERLINK_FLAGS_ANNOTATION,
    INTERLINK_TOLERATION,
    dns_name,
    render_k8s,
    to_yaml,
)
from twins.launch.models import K8sConfig

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
K8S_VERSION = "1.30.0"

_GROUP = {
    "type": "object",
    "required": ["rayStartParams", "template"],
    "properties": {
        "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
        "template": {"type": "object", "required": ["spec"]},
    },
}
RAYCLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["headGroupSpec"],
            "additionalProperties": False,
            "properties": {
                "rayVersion": {"type": "string"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "headGroupSpec": {**_GROUP, "additionalProperties": False},
                "workerGroupSpecs": {
                    "type": "array",
                    "items": {
                        **_GROUP,
                        "required": ["groupName", "rayStartParams", "template"],
                        "additionalProperties": False,
                        "properties": {
                            **_GROUP["properties"],
                            "groupName": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 0},
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 0},
                        },
                    },
                },
            },
        },
    },
}


def _validate(docs: list[dict[str, Any]]) -> None:
    for doc in yaml.safe_load_all(to_yaml(docs)):  # what kubectl would read
        if doc["kind"] == "RayCluster":
            jsonschema.validate(doc, RAYCLUSTER_SCHEMA)
            spec = doc["spec"]
            for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
                tmpl = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}}
                kv.validate({**tmpl, "template": group["template"]}, K8S_VERSION, strict=True)
                assert group["template"]["spec"]["containers"][0]["image"]
        else:
            kv.validate(doc, K8S_VERSION, strict=True)


CFG = "name: my_run\ntrain:\n  epochs: 2\n"
FULL = K8sConfig(
    namespace="science",
    image="ghcr.io/x/twins:1.0",
    nodes=3,
    procs_per_pod=2,
    cpu="4",
    memory="8Gi",
    gpus=1,
    pvc="twins-work",
    service_account="twins",
    interlink_node="vk-leonardo",
    interlink_slurm_flags=["--account=proj42", "--partition=boost_usr_prod"],
)


@pytest.mark.parametrize("kind", ["train", "ray", "twin-update"])
@pytest.mark.parametrize("interlink", [False, True])
@pytest.mark.parametrize("k8s", [K8sConfig(), FULL], ids=["default", "full"])
def test_manifests_validate(kind: str, interlink: bool, k8s: K8sConfig) -> None:
    docs = render_k8s(
        kind, k8s, run_name="my_run", config_text=CFG, twin_dir="/work/twin", interlink=interlink
    )
    _validate(docs)


def test_train_job_torchrun_rendezvous() -> None:
    docs = render_k8s("train", FULL, run_name="my_run", config_text=CFG, overrides=["seed=1"])
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service", "Job"]
    assert docs[0]["data"]["run.yaml"] == CFG
    job = docs[2]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--rdzv_endpoint=my-run-train-0.my-run-train:29500" in cmd
    assert "--nproc_per_node=2" in cmd and cmd[-3:] == ["train", "/etc/twins/run.yaml", "seed=1"]
    assert job["spec"]["template"]["spec"]["subdomain"] == docs[1]["metadata"]["name"]
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    one = render_k8s("train", K8sConfig(), run_name="r", config_path="/data/r.yaml")
    assert "--standalone" in one[1]["spec"]["template"]["spec"]["containers"][0]["command"]


def test_interlink_targets_virtual_nodes() -> None:
    for kind in ("train", "twin-update"):
        docs = render_k8s(kind, FULL, run_name="r", config_text=CFG, twin_dir="/t", interlink=True)
        job = docs[-1]
        tmpl = (
            job["spec"]["template"]
            if kind == "train"
            else job["spec"]["jobTemplate"]["spec"]["template"]
        )
        assert tmpl["spec"]["nodeSelector"]["kubernetes.io/hostname"] == "vk-leonardo"
        assert tmpl["spec"]["tolerations"][0]["key"] == INTERLINK_TOLERATION
        flags = tmpl["metadata"]["annotations"][INTERLINK_FLAGS_ANNOTATION]
        assert flags == "--account=proj42 --partition=boost_usr_prod"
    plain = render_k8s("train", K8sConfig(), run_name="r", config_text=CFG, interlink=True)
    assert plain[-1]["spec"]["template"]["spec"]["nodeSelector"] == {"type": "virtual-kubelet"}
    off = render_k8s("train", FULL, run_name="r", config_text=CFG)
    assert "tolerations" not in off[-1]["spec"]["template"]["spec"]


def test_ray_cluster_and_driver() -> None:
    docs = render_k8s("ray", FULL, run_name="my_run", config_text=CFG)
    assert [d["kind"] for d in docs] == ["ConfigMap", "RayCluster", "Job"]
    assert docs[1]["spec"]["workerGroupSpecs"][0]["replicas"] == 3
    env = docs[2]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "RAY_ADDRESS", "value": "my-run-ray-head-svc:6379"} in env
    assert docs[2]["spec"]["template"]["spec"]["containers"][0]["command"][3] == "tune"


def test_cronjob() -> None:
    (cron,) = render_k8s("twin-update", FULL, run_name="r", twin_dir="/work/twin")
    assert cron["spec"]["schedule"] == "0 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "twins", "twin", "update", "/work/twin"]


def test_errors_and_names() -> None:
    with pytest.raises(ConfigError, match="twin directory"):
        render_k8s("twin-update", K8sConfig())
    with pytest.raises(ConfigError, match="unknown manifest kind"):
        render_k8s("pytorchjob", K8sConfig(), config_text=CFG)
    with pytest.raises(ConfigError, match="no run config"):
        render_k8s("train", K8sConfig())
    assert dns_name("My_Run.v2", "train") == "my-run-v2-train"
    assert len(dns_name("x" * 100, "train")) == 63
    with pytest.raises(ValueError):
        K8sConfig(memory="4 GB")
    with pytest.raises(ValueError):
        K8sConfig(namespace="Bad_NS")
    with pytest.raises(ValueError):
        K8sConfig(imagee="x")


def test_validator_catches_a_broken_manifest() -> None:
    docs = render_k8s("train", K8sConfig(), run_name="r", config_text=CFG)
    docs[-1]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kv.ValidationError):
        _validate(docs)
    ray = render_k8s("ray", K8sConfig(), run_name="r", config_text=CFG)
    ray[1]["spec"]["headGroupSpec"]["rayStartParam"] = {}
    with pytest.raises(jsonschema.ValidationError):
        _validate(ray)
