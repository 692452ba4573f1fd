"""Array work beyond one process's memory: dask clusters and build-once products.

Modules (import them directly; this package imports nothing, so that loading a run config,
which validates the ``compute:`` section with :mod:`twins.compute.config`, never imports
dask.distributed):

- :mod:`twins.compute.config`: the ``compute:`` section of a run config.
- :mod:`twins.compute.cluster`: :func:`~twins.compute.cluster.dask_client`, a context
  manager that runs dask on the threaded scheduler, a ``LocalCluster``, an existing
  scheduler or a dask-jobqueue ``SLURMCluster``, and closes what it started.
- :mod:`twins.compute.slurm`: the ``SLURMCluster`` arguments derived from ``launch.slurm``.
- :mod:`twins.compute.progress`: progress log lines for batch jobs (no bars).
- :mod:`twins.compute.buildonce`: a directory product (e.g. a Zarr store) built once per
  content key by whichever process takes the lock, opened by all others.
"""
