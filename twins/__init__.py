"""twins: the shared core of the drought and Virgo noise digital twins.

The core knows no domain. It offers a strict config (:mod:`twins.config`), a
trainer that runs in one process, under ``torchrun`` or on Ray
(:mod:`twins.train`), MLflow tracking (:mod:`twins.track`), an energy meter
(:mod:`twins.energy`), a dry run (:mod:`twins.dryrun`) and a transactional
twin store (:mod:`twins.twin`). Domains plug in through the ``twins.domains``
entry-point group and through ``task.target`` references in configs.
"""

__version__ = "0.1.0"
