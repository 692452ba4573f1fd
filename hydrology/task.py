"""The drought-forecast task: SPI-3 and soil-moisture index at leads 1-3 months.

Trained by the core trainer (``twins train hydrology/configs/demo.yaml``, torchrun or Ray):
the task prepares the monthly sample cube (:func:`hydrology.dataset.build_cube`, cached in
the run directory; or, with ``store: zarr``, a cell-chunked Zarr store built out of core once
per data and configuration, :mod:`hydrology.cubecache`), serves lazy ``(cell, issue
month)`` samples (or space-time tiles for the ConvLSTM), builds a
:class:`~hydrology.models.ensemble.PerOutputSelect`-wrapped model,
and scores the trained model beside persistence, climatology and the overlap-aware
analogue (:mod:`hydrology.evaluate`).

Per-output best states come from :class:`hydrology.callbacks.PerOutputBest`, which
:meth:`DroughtForecast.callbacks` returns for the trainer.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from torch import nn

from hydrology.callbacks import PerOutputBest
from hydrology.cubecache import cube_store, open_training_lazy
from hydrology.cubestore import CHUNK_BYTES, dataset_to_cube, open_cube
from hydrology.dataset import (
    DEFAULT_SPLITS,
    DroughtCube,
    build_cube,
    check_splits,
    cube_hash,
    output_names,
    subsample_cells,
)
from hydrology.evaluate import evaluate_run, headline, issue_months
from hydrology.gates import Gates
from hydrology.indices import check_index_names
from hydrology.ingest import read_training
from hydrology.models.ensemble import PerOutputSelect, TileConvLSTM
from hydrology.models.lstm import CellLSTM
from hydrology.pet import PetMethod
from hydrology.projection import project_cube_build
from hydrology.samples import CellDataset, TileDataset, masked_mse
from hydrology.selection import PerOutputBestFromStart
from hydrology.sharding import (
    LazyCellDataset,
    cell_subsample,
    predict_by_chunk,
    rank_dataset,
    shard_counts,
    verification_window,
)
from hydrology.synthetic import PRESETS, generate
from twins.compute.buildonce import is_built
from twins.errors import DataError, TwinsError
from twins.memory import return_large_frees
from twins.task import PreprocessProjection, Splits, Task

log = logging.getLogger(__name__)


def _month(value: str) -> str:
    """A month ``"YYYY-MM"`` (a day ``"YYYY-MM-DD"`` names its month)."""
    try:
        ok = len(value) in (7, 10) and value[4] == "-" and pd.Timestamp(value) is not None
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"expected a month 'YYYY-MM', got {value!r}")
    return value


Month = Annotated[str, AfterValidator(_month)]


class DroughtSplits(BaseModel):
    """Training, validation and test periods, each ``[first month, last month]`` inclusive;
    time-ordered and disjoint (``train < val < test``).

    Example (YAML)::

        splits: {train: [1991-01, 2010-12], val: [2011-01, 2014-12], test: [2015-01, 2020-12]}
    """

    model_config = ConfigDict(extra="forbid")

    train: tuple[Month, Month]
    val: tuple[Month, Month]
    test: tuple[Month, Month]

    @model_validator(mode="after")
    def _ordered(self) -> DroughtSplits:
        try:
            check_splits(self.periods())
        except TwinsError as exc:  # check_splits speaks DataError; here it is a config value
            raise ValueError(f"{exc} ({exc.hint})" if exc.hint else str(exc)) from None
        return self

    def periods(self) -> dict[str, tuple[str, str]]:
        """``{"train"|"val"|"test": (first month, last month)}``."""
        return {"train": self.train, "val": self.val, "test": self.test}


class DroughtParams(BaseModel):
    """Parameters of :class:`DroughtForecast`.

    Attributes:
        preset: Synthetic preset (``tiny`` or ``demo``) used when ``path`` is not given.
        path: NetCDF file(s) or glob of a canonical daily dataset (overrides ``preset``).
        seed: Seed of the synthetic generator.
        splits: Training, validation and test periods (:class:`DroughtSplits`); default per
            preset.
        require_val_drought: Refuse a validation period without drought months.
        seq_len: Months of input history (issue month included).
        regional: Kernel widths [cells] of regional-mean inputs of every target index
            (Gaussian over land; e.g. ``[6, 12]``), finite and > 0; empty = none.
        targets: Target indices, ``spi_N``, ``spei_N`` or ``ssmi_N`` (N >= 1 months),
            distinct; each needs its variable in the data (``tp``; ``tp`` and PET; ``swvl1``),
            else one :class:`~twins.errors.ConfigError` names it and the file.
        pet: Where SPEI's potential evaporation comes from (:mod:`hydrology.pet`): ``pev``
            as given, derived from temperature (``thornthwaite``: monthly ``t2m``;
            ``hargreaves``: daily ``mn2t``/``mx2t``), or ``auto`` (the first available).
        input_masks: Observation-mask inputs: ``auto`` (when the record misses months at
            land cells, as gauge grids do), ``on`` or ``off``.
        leads: Lead times in months.
        model: ``lstm`` (per cell) or ``convlstm`` (space-time tiles).
        hidden: Hidden size (LSTM units / ConvLSTM channels).
        dropout: Dropout before the head (LSTM).
        hybrid: Feed the analogue (ESP) forecast as input and learn the residual over it.
        subsample: Train on a regular ``k x k`` subsample of land cells (1 = all).
        val_subsample: Validate on a ``k x k`` subsample offset by ``k // 2`` (disjoint from
            the training cells when both are >= 2).
        tile: Tile size of the ConvLSTM.
        skip: Add a linear path from the issue month's inputs to the outputs (zero at
            initialisation) beside the LSTM head; it carries the near-linear soil-moisture
            persistence that the LSTM learns slowly.
        members: Seed-ensemble size of the LSTM: independently initialised networks trained
            side by side on the same batches, each on its own loss, averaged at forecast
            time (selection per output applies to the ensemble mean).
        per_output_best: Keep the best validation state per output.
        select_untrained: Let the state before training (for the hybrid: its baseline, ESP
            or climatology) compete in the per-output selection, so an output training never
            improves on the validation period keeps the baseline
            (:class:`hydrology.selection.PerOutputBestFromStart`).
        output_patience: Stop training when no output's validation RMSE has improved for
            this many validations (0: never; use it instead of the trainer's joint early
            stop, which stops on the mean loss and discards per-output gains).
        cache: Cache the prepared cube (``store``); False builds it in memory every time.
        store: Where the cube is cached: ``npz`` (one file in the run directory, built in
            memory), ``zarr`` (a Zarr store chunked by cell under ``cache_dir``, built out of
            core once per data and configuration and shared by the runs, DDP ranks and tune
            trials that use ``cache_dir``; :mod:`hydrology.cubecache`), or ``auto``: ``zarr``
            when the files hold at least 1 GiB of time-varying data, else ``npz``.
        cache_dir: Root of the Zarr cube stores; default ``<workdir>/cubes`` (the run
            directory's parent: shared by the runs and the trials of a tune study in one
            workdir). On a cluster, a file system every node sees, with ``flock``.
        block_mb: Input megabytes per block of the out-of-core build (the whole record of a
            block of cells is read at once; the build's memory grows with it).
        chunk_mb: Megabytes of the dynamic inputs per chunk of the Zarr cube store. A DDP
            rank (or Ray worker) reads whole chunks of cells, so the store needs at least as
            many chunks as ranks: smaller chunks shard finer, larger ones read faster.
        build_timeout_s: How long a process waits for another's build of the cube store.
        gates: Plausibility bounds of the files in ``path`` (:class:`hydrology.gates.Gates`);
            widen one with a key, e.g. ``task.params.gates.tp.max=2500``. They decide what
            is accepted, never the data, so they are not part of :meth:`fingerprint`.
    """

    model_config = ConfigDict(extra="forbid")

    preset: Literal["tiny", "demo"] = "tiny"
    path: list[str] | None = None
    seed: int = Field(0, ge=0)
    splits: DroughtSplits | None = None
    require_val_drought: bool = True
    seq_len: int = Field(36, ge=1, le=120)
    regional: list[float] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=lambda: ["spi_3", "ssmi_1"])
    pet: PetMethod = "auto"
    input_masks: Literal["auto", "on", "off"] = "auto"
    leads: list[int] = Field(default_factory=lambda: [1, 2, 3])
    model: Literal["lstm", "convlstm"] = "lstm"
    hidden: int = Field(64, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    hybrid: bool = True
    subsample: int = Field(1, ge=1)
    val_subsample: int = Field(1, ge=1)
    tile: int = Field(16, ge=2)
    skip: bool = False
    members: int = Field(1, ge=1)
    per_output_best: bool = True
    select_untrained: bool = False
    output_patience: int = Field(0, ge=0)
    cache: bool = True
    store: Literal["auto", "npz", "zarr"] = "auto"
    cache_dir: str | None = None
    block_mb: int = Field(64, ge=1)
    chunk_mb: float = Field(CHUNK_BYTES / 2**20, gt=0)
    build_timeout_s: float = Field(3600.0, gt=0)
    gates: Gates = Field(default_factory=Gates)

    @field_validator("path", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("regional")
    @classmethod
    def _regional(cls, v: list[float]) -> list[float]:
        if any(not (math.isfinite(s) and s > 0) for s in v):
            raise ValueError(f"regional kernel widths must be finite and > 0 cells, got {v}")
        return v

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        check_index_names(v)
        if len(set(v)) != len(v):
            raise ValueError(f"targets must be distinct, got {v}")
        return v

    @field_validator("leads")
    @classmethod
    def _leads(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v) or sorted(set(v)) != v:
            raise ValueError("leads must be distinct, increasing and >= 1")
        return v

    @model_validator(mode="after")
    def _check(self) -> DroughtParams:
        if not self.targets:
            raise ValueError("targets must not be empty")
        return self

    def resolved_splits(self) -> dict[str, tuple[str, str]]:
        """The splits in use (explicit, or the preset's defaults)."""
        return self.splits.periods() if self.splits else DEFAULT_SPLITS[self.preset]


#: Parameters that decide where and how the cube is stored, never what it holds: not part
#: of :meth:`DroughtForecast.fingerprint` (nor are the gates, which only accept or refuse).
NOT_DATA = {"gates", "store", "cache_dir", "block_mb", "build_timeout_s"}

#: ``store: auto`` keeps a Zarr cube from this much time-varying input on (bytes).
ZARR_AUTO_BYTES = 2**30


class DroughtForecast(Task):
    """Forecast SPI-3 and SSMI-1 at leads 1-3 months from monthly histories.

    A Zarr cube is built on :attr:`~twins.task.Task.compute`'s dask engine (the run
    config's ``compute:`` and ``launch.slurm``, which :func:`twins.task.build_task` sets).
    """

    Params = DroughtParams
    params: DroughtParams

    # -- data ---------------------------------------------------------------------------
    def _data_identity(self) -> dict[str, Any]:
        p = self.params
        if p.path:
            files = sorted(f for pat in p.path for f in glob.glob(pat)) or list(p.path)
            stats = []
            for f in files:
                st = Path(f).stat() if Path(f).exists() else None
                stats.append([f, st.st_size if st else None, st.st_mtime_ns if st else None])
            return {"files": stats}
        return {"preset": p.preset, "seed": p.seed}

    def _cube_key(self) -> str:
        p = self.params
        parts = [p.resolved_splits(), p.targets, p.leads, p.require_val_drought]
        if p.regional:  # (absent from the hash of cubes without regional inputs, as before)
            parts.append(list(p.regional))
        if (p.pet, p.input_masks) != ("auto", "auto"):  # (likewise)
            parts.append([p.pet, p.input_masks])
        return cube_hash(self._data_identity(), *parts)

    def data_source(self) -> str:
        """The configured files (or the synthetic preset), for messages."""
        p = self.params
        return ", ".join(p.path) if p.path else f"synthetic preset {p.preset!r}"

    def load_dataset(self) -> Any:
        """The canonical daily or monthly dataset (synthetic preset or the configured files)."""
        p = self.params
        if p.path:
            # Checked, gated and in canonical units (hydrology.ingest). One file is read
            # without dask: the cube loads everything anyway and dask's task graph costs
            # ~15 % of the read (benchmarks/bench_grid_pipeline.py).
            return read_training(p.path, p.gates)
        return generate(PRESETS[p.preset].model_copy(update={"seed": p.seed}))

    def store_kind(self) -> Literal["npz", "zarr"]:
        """``params.store`` resolved: ``auto`` is ``zarr`` for at least 1 GiB of input."""
        p = self.params
        if p.store != "auto":
            return p.store
        if not p.path:
            return "npz"
        size = sum(s[1] or 0 for s in self._data_identity()["files"])
        return "zarr" if size >= ZARR_AUTO_BYTES else "npz"

    def _store_root_key(self) -> tuple[Path, str]:
        p = self.params
        root = Path(p.cache_dir) if p.cache_dir else Path(self.workdir).parent / "cubes"
        chunks = "" if p.chunk_mb == CHUNK_BYTES / 2**20 else f"-c{p.chunk_mb:g}"
        return root, f"cube-{self._cube_key()}-zarr{p.block_mb}{chunks}"

    def _cube_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hydrology.outofcore.build_cube_store`."""
        p = self.params
        return {
            "splits": p.resolved_splits(),
            "targets": tuple(p.targets),
            "leads": tuple(p.leads),
            "require_val_drought": p.require_val_drought,
            "regional": tuple(p.regional),
            "pet": p.pet,
            "input_masks": p.input_masks,
            "source": self.data_source(),
            "block_bytes": p.block_mb * 2**20,
            "chunk_bytes": int(p.chunk_mb * 2**20),
        }

    def cube_store(self) -> Path:
        """The Zarr cube store (built once per data and configuration; see ``store``).

        Once the store is there, the process returns large freed blocks to the system
        (:func:`twins.memory.return_large_frees`): reading it chunk by chunk from dask's
        threads otherwise leaves the freed chunk buffers in glibc's arenas. Not before a
        build: a fresh mapping for every large temporary made the demo grid's threaded build
        1.36x slower (17.3 s against 12.7 s, ``benchmarks/drought_outofcore_bench.py
        throughput``).
        """
        root, key = self._store_root_key()
        product = cube_store(
            root,
            key,
            self._lazy_dataset,
            self._cube_kwargs(),
            self.compute,
            self.slurm,
            self.params.build_timeout_s,
        )
        return_large_frees()
        return product.path

    def preprocess(self) -> str:
        """Build the cube (the Zarr store once per data and configuration, or the cached
        ``npz``) without loading it; ``twins preprocess CONFIG`` runs this."""
        p = self.params
        if p.cache and self.store_kind() == "zarr":
            return f"cube store {self.cube_store()}"
        self.cube()
        if not p.cache:
            return "cube built in memory (task.params.cache is false: nothing kept)"
        return f"cube {Path(self.workdir) / 'data' / f'cube-{self._cube_key()}.npz'}"

    def preprocessing_projection(self) -> PreprocessProjection | None:
        """The Zarr cube build's wall time and peak memory, projected from a probe on a
        few blocks of the grid over the whole record (:mod:`hydrology.projection`).

        None when the cube is not built out of core from files (a synthetic preset or
        ``store: npz``: the cube is built in memory; or ``cache: false``).
        """
        p = self.params
        if not (p.path and p.cache and self.store_kind() == "zarr"):
            return None
        root, key = self._store_root_key()
        if is_built(root, key):  # the run opens it: nothing to build, nothing to probe
            return PreprocessProjection(
                0.0, 0, f"nothing: the cube store {root / key} is built", 0.0
            )
        return project_cube_build(p.path, p.gates, self._cube_kwargs(), self.compute, self.slurm)

    def _lazy_dataset(self) -> Any:
        p = self.params
        if p.path:
            return open_training_lazy(p.path, p.gates, p.block_mb * 2**20)
        return self.load_dataset()

    def cube(self) -> DroughtCube:
        """The prepared sample cube (built once, cached per ``store``), in memory."""
        if getattr(self, "_cube", None) is not None:
            return self._cube
        p = self.params
        if p.cache and self.store_kind() == "zarr":
            self._cube = dataset_to_cube(open_cube(self.cube_store()))
            return self._cube
        path = Path(self.workdir) / "data" / f"cube-{self._cube_key()}.npz"
        if p.cache and path.is_file():
            log.info("loading cached cube %s", path)
            self._cube: DroughtCube = DroughtCube.load(path)
            return self._cube
        self._cube = build_cube(
            self.load_dataset(),
            p.resolved_splits(),
            p.targets,
            p.leads,
            p.require_val_drought,
            regional=p.regional,
            pet=p.pet,
            input_masks=p.input_masks,
            source=self.data_source(),
        )
        if p.cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._cube.save(path)
        return self._cube

    @property
    def outputs(self) -> list[str]:
        """Output names, target-major (``spi_3@1`` ...)."""
        return output_names(self.params.targets, self.params.leads)

    def _reads_store(self) -> bool:
        """Whether datasets and evaluation read the Zarr cube store by chunks of cells
        (the per-cell model on a ``zarr`` store) instead of holding the cube in memory."""
        p = self.params
        return p.cache and p.model != "convlstm" and self.store_kind() == "zarr"

    def _store_splits(self) -> Splits:
        """The datasets of a Zarr cube store: this rank's shard of the training cells over
        the training months (:func:`hydrology.sharding.rank_dataset`; every rank's sample
        count for the trainer when there are several), validation and test read chunk by
        chunk (:class:`hydrology.sharding.LazyCellDataset`)."""
        p = self.params
        ds = open_cube(self.cube_store())
        train, _ = rank_dataset(ds, "train", p.seq_len, self.rank, self.world_size, p.subsample)
        counts = None
        if self.world_size > 1:
            counts = tuple(shard_counts(ds, "train", p.seq_len, self.world_size, p.subsample))
        val_cells = cell_subsample(ds, p.val_subsample, p.val_subsample // 2)
        return Splits(
            train,
            LazyCellDataset(ds, "val", p.seq_len, val_cells),
            LazyCellDataset(ds, "test", p.seq_len),
            train_counts=counts,
        )

    def release_data(self) -> None:
        """Drop the datasets and the cube kept in memory."""
        self._splits: Splits | None = None
        self._cube = None

    def splits(self) -> Splits:
        if getattr(self, "_splits", None) is not None:
            return self._splits
        p = self.params
        if self._reads_store():
            self._splits = self._store_splits()
        elif p.model == "convlstm":
            cube = self.cube()
            self._splits = Splits(
                *(TileDataset(cube, s, p.seq_len, p.tile) for s in ("train", "val", "test"))
            )
        else:
            cube = self.cube()
            train_cells = subsample_cells(cube, p.subsample, 0)
            val_cells = subsample_cells(cube, p.val_subsample, p.val_subsample // 2)
            self._splits = Splits(
                CellDataset(cube, "train", p.seq_len, train_cells),
                CellDataset(cube, "val", p.seq_len, val_cells),
                CellDataset(cube, "test", p.seq_len),
            )
        log.info(
            "samples: train %d (rank %d of %d), val %d, test %d",
            len(self._splits.train),  # type: ignore[arg-type]
            self.rank,
            self.world_size,
            len(self._splits.val),  # type: ignore[arg-type]
            len(self._splits.test),  # type: ignore[arg-type]
        )
        return self._splits

    # -- model --------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        p = self.params
        if self._reads_store():  # the store's attributes, no cell read
            meta = open_cube(self.cube_store()).attrs["meta"]
        else:
            meta = self.cube().meta
        n_dyn, n_sta = len(meta["dynamic_features"]), len(meta["static_features"])
        n_out = len(self.outputs)
        net: nn.Module
        if p.model == "convlstm":
            net = TileConvLSTM(n_dyn, n_sta, n_out, p.hidden, residual=p.hybrid)
        else:
            net = CellLSTM(
                n_dyn,
                n_sta,
                n_out,
                p.hidden,
                p.dropout,
                residual=p.hybrid,
                members=p.members,
                skip=p.skip,
            )
        return PerOutputSelect(net, n_out)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean squared error over the finite targets of the batch (NaN targets masked).

        A seed ensemble in training returns ``(batch, n_out, members)``: the loss is then the
        mean of the members' losses (each member is fitted on its own).
        """
        inputs, target = batch
        pred = model(*inputs)
        if pred.dim() == target.dim() + 1:
            target = target.unsqueeze(-1).expand_as(pred)
        return masked_mse(pred, target)

    def callbacks(self) -> list[Any]:
        """Trainer callbacks the task contributes: the per-output best-state keeper."""
        if not self.params.per_output_best:
            return []
        keeper = PerOutputBestFromStart if self.params.select_untrained else PerOutputBest
        return [keeper(self.outputs, patience=self.params.output_patience)]

    def fingerprint(self) -> str:
        """Hash of the task parameters and the identity of the data."""
        blob = json.dumps(
            [self.params.model_dump(mode="json", exclude=NOT_DATA), self._data_identity()],
            sort_keys=True,
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    # -- evaluation -----------------------------------------------------------------------
    def skill_table(
        self, model: nn.Module | None, split: str = "test", out_dir: Any = None
    ) -> Any:
        """Skill table DataFrame of ``model`` and the three baselines (see
        :func:`hydrology.evaluate.evaluate_run`)."""
        p = self.params
        if not self._reads_store():
            return evaluate_run(model, self.cube(), p.seq_len, p.model, split, out_dir)
        # From the store: the months the split's verification reads, without the model
        # inputs; the model's forecasts made one chunk of cells at a time.
        ds = open_cube(self.cube_store())
        window = ds.isel(time=verification_window(ds, split, p.seq_len))
        cube = dataset_to_cube(window, inputs=False)
        forecasts = None
        if model is not None:
            issue = issue_months(cube, split, p.seq_len)
            forecasts = predict_by_chunk(model, window, issue, p.seq_len)
        return evaluate_run(model, cube, p.seq_len, p.model, split, out_dir, forecasts)

    def figures(self, model: nn.Module, split: str, out_dir: Path) -> list[Path]:
        """The skill and drought maps :meth:`evaluate` wrote for ``split`` (PNG), written
        now if it has not run."""
        out_dir = Path(out_dir)
        if not any(out_dir.glob("*.png")):
            self.skill_table(model, split, out_dir)
        return sorted(out_dir.glob("*.png"))

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Headline skill of the model and baselines on a split, flat for MLflow.

        Keys ``{split}_{target}_l{lead}_{method}_{metric}``: median RMSE / NSE / KGE_nb
        across cells and pooled CSI at index < -1. The full skill table is also written to
        ``skill_{split}.csv`` in the run directory, and skill and drought maps to
        ``figures/`` there (in the same pass; :meth:`figures` returns them).
        """
        if split not in ("train", "val", "test"):
            raise DataError(f"unknown split {split!r}")
        fig_dir = Path(self.workdir) / "figures" if self.workdir is not None else None
        table = self.skill_table(model, split, fig_dir)
        self.last_table = table
        if self.workdir is not None:  # the full table beside model.pt (read by the demo)
            path = Path(self.workdir) / f"skill_{split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(path, index=False)
        out: dict[str, float] = {}
        for (tgt, lead, method), row in headline(table).iterrows():
            for metric, val in row.items():
                if np.isfinite(val):
                    key = f"{split}_{tgt}_l{lead}_{method}_{str(metric).replace('@', '')}"
                    out[key] = float(val)
        return out
