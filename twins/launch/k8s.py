"""Kubernetes manifests for twins: a training Job, a RayCluster for tuning, a CronJob.

Three kinds, each a list of plain dicts (render with :func:`to_yaml`):

``train``
    A ConfigMap holding the run config, a headless Service and an Indexed ``batch/v1``
    Job with one pod per node; each pod runs ``torchrun --nnodes=N --nproc_per_node=M``
    with a c10d rendezvous on pod 0 (``<job>-0.<service>``). One node uses
    ``--standalone``.
``ray``
    A KubeRay ``ray.io/v1`` RayCluster (head + a worker group) and a ``batch/v1`` Job
    that runs ``twins tune CONFIG`` (or ``twins train --backend ray``) against it
    through ``RAY_ADDRESS=<cluster>-head-svc:6379``.
``twin-update``
    A ``batch/v1`` CronJob running ``twins twin update TWIN_DIR`` on ``k8s.schedule``
    with ``concurrencyPolicy: Forbid`` (the twin's own lock is the second guard).

``interlink=True`` targets interLink virtual nodes: a node selector
(``kubernetes.io/hostname: <interlink_node>`` or ``type: virtual-kubelet``), the
``virtual-node.interlink/no-schedule`` toleration, and the Slurm flags as the
``slurm-job.vk.io/flags`` annotation read by interLink's Slurm plugin.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml

from twins.errors import ConfigError
from twins.launch.models import K8sConfig

Kind = Literal["train", "ray", "twin-update"]
KINDS: tuple[str, ...] = ("train", "ray", "twin-update")
#: Toleration key of interLink virtual nodes.
INTERLINK_TOLERATION = "virtual-node.interlink/no-schedule"
#: Pod annotation carrying sbatch flags to interLink's Slurm plugin.
INTERLINK_FLAGS_ANNOTATION = "slurm-job.vk.io/flags"
CONFIG_DIR = "/etc/twins"
RDZV_PORT = 29500


def dns_name(text: str, suffix: str = "") -> str:
    """A DNS-1123 label from a run name: lower case, ``[a-z0-9-]``, at most 63 characters."""
    base = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "run"
    suffix = f"-{suffix}" if suffix else ""
    return base[: 63 - len(suffix)].rstrip("-") + suffix


def _labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "twins",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
    }


def _container(
    k8s: K8sConfig, command: list[str], env: dict[str, str] | None = None, with_config: bool = True
) -> dict[str, Any]:
    limits: dict[str, str] = {"cpu": k8s.cpu, "memory": k8s.memory}
    if k8s.gpus:
        limits["nvidia.com/gpu"] = str(k8s.gpus)
    base_env = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    c: dict[str, Any] = {
        "name": "twins",
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        "command": command,
        "env": [{"name": k, "value": v} for k, v in base_env.items()],
        "resources": {"requests": dict(limits), "limits": limits},
        "volumeMounts": [],
    }
    if with_config:
        c["volumeMounts"].append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
    if k8s.pvc:
        c["volumeMounts"].append({"name": "work", "mountPath": k8s.mount_path})
    if not c["volumeMounts"]:
        del c["volumeMounts"]
    return c


def _pod_spec(
    k8s: K8sConfig,
    containers: list[dict[str, Any]],
    config_map: str | None,
    interlink: bool,
    restart: str = "Never",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": restart, "containers": containers}
    volumes: list[dict[str, Any]] = []
    if config_map:
        volumes.append({"name": "config", "configMap": {"name": config_map}})
    if k8s.pvc:
        volumes.append({"name": "work", "persistentVolumeClaim": {"claimName": k8s.pvc}})
    if volumes:
        spec["volumes"] = volumes
    if k8s.service_account:
        spec["serviceAccountName"] = k8s.service_account
    selector = dict(k8s.node_selector)
    if interlink:
        if k8s.interlink_node:
            selector["kubernetes.io/hostname"] = k8s.interlink_node
        else:
            selector["type"] = "virtual-kubelet"
        spec["tolerations"] = [
            {"key": INTERLINK_TOLERATION, "operator": "Exists", "effect": "NoSchedule"}
        ]
    if selector:
        spec["nodeSelector"] = selector
    return spec


def _pod_meta(k8s: K8sConfig, labels: dict[str, str], interlink: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": labels}
    if interlink and k8s.interlink_slurm_flags:
        meta["annotations"] = {INTERLINK_FLAGS_ANNOTATION: " ".join(k8s.interlink_slurm_flags)}
    return meta


def _config_map(name: str, k8s: K8sConfig, config_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": _labels(name, "config")},
        "data": {"run.yaml": config_text},
    }


def _train(
    name: str, k8s: K8sConfig, cfg: str, overrides: list[str], cm: str | None, il: bool
) -> list[dict[str, Any]]:
    job = dns_name(name, "train")
    svc = job
    labels = _labels(name, "train")
    if k8s.nodes == 1:
        launch = ["--standalone"]
    else:
        launch = [
            f"--nnodes={k8s.nodes}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={job}-0.{svc}:{RDZV_PORT}",
            f"--rdzv_id={job}",
        ]
    command = [
        "python",
        "-m",
        "torch.distributed.run",
        *launch,
        f"--nproc_per_node={k8s.procs_per_pod}",
        "-m",
        "twins",
        "train",
        cfg,
        *overrides,
    ]
    container = _container(k8s, command, with_config=cm is not None)
    container["ports"] = [{"containerPort": RDZV_PORT, "name": "rdzv"}]
    pod = _pod_spec(k8s, [container], cm, il)
    pod["subdomain"] = svc
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": svc, "namespace": k8s.namespace, "labels": labels},
            "spec": {
                "clusterIP": "None",
                "selector": labels,
                "ports": [{"name": "rdzv", "port": RDZV_PORT, "targetPort": RDZV_PORT}],
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job, "namespace": k8s.namespace, "labels": labels},
            "spec": {
                "completionMode": "Indexed",
                "completions": k8s.nodes,
                "parallelism": k8s.nodes,
                "backoffLimit": k8s.backoff_limit,
                "template": {"metadata": _pod_meta(k8s, labels, il), "spec": pod},
            },
        },
    ]
    return docs


def _ray(
    name: str,
    k8s: K8sConfig,
    cfg: str,
    overrides: list[str],
    cm: str | None,
    il: bool,
    command: str,
) -> list[dict[str, Any]]:
    cluster = dns_name(name, "ray")
    head_labels = _labels(name, "ray-head")
    worker_labels = _labels(name, "ray-worker")

    def ray_pod(labels: dict[str, str]) -> dict[str, Any]:
        c = _container(k8s, [], with_config=False)
        del c["command"]  # KubeRay supplies "ray start"
        c["name"] = "ray"
        return {
            "metadata": _pod_meta(k8s, labels, il),
            "spec": _pod_spec(k8s, [c], None, il, restart="Always"),
        }

    ray_cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": cluster, "namespace": k8s.namespace, "labels": head_labels},
        "spec": {
            "rayVersion": k8s.ray_version,
            "headGroupSpec": {
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                "template": ray_pod(head_labels),
            },
            "workerGroupSpecs": [
                {
                    "groupName": "workers",
                    "replicas": k8s.nodes,
                    "minReplicas": k8s.nodes,
                    "maxReplicas": k8s.nodes,
                    "rayStartParams": {},
                    "template": ray_pod(worker_labels),
                }
            ],
        },
    }
    if command == "tune":
        argv = ["python", "-m", "twins", "tune", cfg, *overrides]
    else:
        argv = ["python", "-m", "twins", "train", cfg, *overrides, "--backend", "ray"]
        argv += ["--workers", str(k8s.nodes * k8s.procs_per_pod)]
    driver_labels = _labels(name, "ray-driver")
    driver = _container(k8s, argv, {"RAY_ADDRESS": f"{cluster}-head-svc:6379"}, cm is not None)
    driver["resources"] = {"requests": {"cpu": "1", "memory": "2Gi"}}
    submit_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": dns_name(name, command),
            "namespace": k8s.namespace,
            "labels": driver_labels,
        },
        "spec": {
            "backoffLimit": k8s.backoff_limit,
            "template": {
                "metadata": {"labels": driver_labels},
                "spec": _pod_spec(k8s, [driver], cm, False),
            },
        },
    }
    return [ray_cluster, submit_job]


def _cron(name: str, k8s: K8sConfig, twin_dir: str, il: bool) -> list[dict[str, Any]]:
    labels = _labels(name, "twin-update")
    container = _container(
        k8s, ["python", "-m", "twins", "twin", "update", twin_dir], with_config=False
    )
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {
                "name": dns_name(name, "update")[:52],  # CronJob names are at most 52
                "namespace": k8s.namespace,
                "labels": labels,
            },
            "spec": {
                "schedule": k8s.schedule,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "metadata": _pod_meta(k8s, labels, il),
                            "spec": _pod_spec(k8s, [container], None, il),
                        },
                    }
                },
            },
        }
    ]


def render_k8s(
    kind: Kind | str,
    k8s: K8sConfig,
    *,
    run_name: str = "run",
    config_text: str | None = None,
    config_path: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    twin_dir: str | None = None,
    interlink: bool = False,
    ray_command: Literal["train", "tune"] = "tune",
) -> list[dict[str, Any]]:
    """Manifests for one kind of workload.

    Args:
        kind: ``"train"``, ``"ray"`` or ``"twin-update"``.
        k8s: Validated Kubernetes settings.
        run_name: Run name; object names derive from it.
        config_text: Resolved run config (YAML); shipped in a ConfigMap and mounted
            at ``/etc/twins/run.yaml``. Ignored by ``twin-update``.
        config_path: Config path inside the image or the claim, instead of ``config_text``.
        overrides: ``section.key=value`` passed to ``twins train``/``tune``.
        twin_dir: Twin directory inside the pod (``twin-update``).
        interlink: Target interLink virtual nodes.
        ray_command: What the Ray driver Job runs: ``tune`` or ``train``.

    Returns:
        The manifests, in the order to apply them.

    Raises:
        ConfigError: Unknown kind, or a missing config or twin directory.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown manifest kind {kind!r}", f"use one of {', '.join(KINDS)}")
    overrides = list(overrides)
    if kind == "twin-update":
        if not twin_dir:
            raise ConfigError("a twin-update CronJob needs the twin directory", "pass --twin")
        return _cron(run_name, k8s, twin_dir, interlink)
    docs: list[dict[str, Any]] = []
    cm = None
    if config_text is not None:
        cm = dns_name(run_name, "config")
        docs.append(_config_map(cm, k8s, config_text))
        cfg = f"{CONFIG_DIR}/run.yaml"
    elif config_path:
        cfg = config_path
    else:
        raise ConfigError("no run config for the manifests", "give config_text or config_path")
    if kind == "train":
        return docs + _train(run_name, k8s, cfg, overrides, cm, interlink)
    return docs + _ray(run_name, k8s, cfg, overrides, cm, interlink, ray_command)


def to_yaml(docs: list[dict[str, Any]]) -> str:
    """Manifests as one multi-document YAML stream (``kubectl apply -f -``)."""
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
