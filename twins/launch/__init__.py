"""Job launchers: Slurm batch scripts and Kubernetes manifests, previewed before submission.

Nothing here imports torch or Ray: rendering a script must be fast and work on a login node.

- :mod:`twins.launch.models`: the strict ``launch:`` config section (Slurm, Kubernetes).
- :mod:`twins.launch.slurm`: ``render_sbatch`` and ``submit`` (``sbatch --parsable``).
- :mod:`twins.launch.k8s`: Job, RayCluster (KubeRay) and CronJob manifests, interLink-aware.
- :mod:`twins.launch.cli`: the ``twins launch slurm|k8s`` subcommands.
"""

from __future__ import annotations

from twins.launch.models import ContainerConfig, K8sConfig, LaunchConfig, SlurmConfig

__all__ = ["ContainerConfig", "K8sConfig", "LaunchConfig", "SlurmConfig"]
