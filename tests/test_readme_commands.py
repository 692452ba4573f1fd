"""Every command the README shows runs in the suite, so a documented command cannot rot.

The README's fenced ``bash`` blocks are parsed into commands, grouped by the section they
appear in. :data:`COMMANDS` says, for every one of them, how the suite runs it:

- :class:`Run`: in-process through ``twins.cli.main`` (or a module's ``main``), in one
  walk-through directory where earlier steps left their outputs, as a user following the
  README would. The words are expanded by ``bash`` there (globs, ``$(...)``), so a quoting
  or substitution mistake in the README shows. Where the README's command is large, the
  table runs the same command on a tiny config (``demo.yaml`` -> ``tiny.yaml``, short demos);
  worker counts are kept for dry runs (projections), and Slurm and Kubernetes launches are
  previews (``--submit`` goes to a stand-in ``sbatch`` that records the script);
- :class:`Shell`, :class:`Server`, :class:`Export`, :class:`SrunStep`: the same through
  ``/bin/sh``, a background server, an environment variable, or ranks started with the
  variables ``srun`` sets;
- :class:`Elsewhere`: run for real by a named test of the suite (several processes, a Ray
  cluster, a real Slurm); the test must exist and its source must contain the given
  fragments;
- :class:`Check`: a command that cannot run here (a container engine, a package index)
  and is checked against the files it depends on.

The table is checked against the README both ways: a new README command without an entry
(or an entry whose command left the README) fails :func:`test_table_matches_the_readme`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_walk_module() -> ModuleType:
    """``tests/_readme_walk.py`` by path (the suite imports test modules by path too)."""
    path = Path(__file__).with_name("_readme_walk.py")
    spec = importlib.util.spec_from_file_location("_readme_walk", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


_rw = _load_walk_module()
Check, Elsewhere, Entry, Export, Run = _rw.Check, _rw.Elsewhere, _rw.Entry, _rw.Export, _rw.Run
Server, Shell, SrunStep, Walk = _rw.Server, _rw.Shell, _rw.SrunStep, _rw.Walk
entry, readme_commands = _rw.entry, _rw.readme_commands
ROOT, VENV_BIN = _rw.ROOT, _rw.VENV_BIN
README = ROOT / "README.md"

# -- what a reader brings: data files, a fitted cleaner ---------------------------------------
TOY_RUN = """\
# the README's run.yaml: the toy task, small
name: readme-run
train:
  epochs: 2
  batch_size: 64
task:
  params:
    length: 600
    hidden: 8
"""


def _months(walk: Walk) -> None:
    """``era5land_2021-03.nc``: the month after the tiny demo twin's cursor (2007-12), and
    ``incoming/era5land_2008-02.nc`` for the cron line, in the tiny grid's layout."""
    from hydrology.synthetic import PRESETS, generate, write_netcdf

    ds = generate(PRESETS["tiny"].model_copy(update={"years": 9}))
    ds = ds.drop_vars(["drought_forcing", "drought_mask"])
    month = ds.time.dt.strftime("%Y-%m")
    write_netcdf(ds.sel(time=month == "2008-01"), walk.root / "era5land_2021-03.nc")
    write_netcdf(ds.sel(time=month == "2008-02"), walk.root / "incoming" / "era5land_2008-02.nc")


def _era5land_files(walk: Walk) -> None:
    """``era5land/era5land_YYYY.nc``: the tiny grid as yearly files (the README's
    ``/data/era5land/*.nc``)."""
    from hydrology.synthetic import generate, write_netcdf

    ds = generate("tiny").drop_vars(["drought_forcing", "drought_mask"])
    for year in sorted(set(ds.time.dt.year.values.tolist())):
        write_netcdf(ds.sel(time=str(year)), walk.root / "era5land" / f"era5land_{year}.nc")


README_TEST_LINE = "bash scripts/setup.sh && OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m pytest"
README_GPS = 1262304178.0  # the README's segment file V-V1_SEGMENT-1262304178-32.h5


def _noise_inputs(walk: Walk) -> None:
    """``cascade.pt`` (a Wiener + DeepClean cascade fitted briefly on 64 s before the
    segment), the 32-s segment ``V-V1_SEGMENT-1262304178-32.h5`` and ``channels.txt``."""
    import numpy as np
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    from gravwave import synthetic as syn
    from gravwave.io import write_multichannel_hdf5
    from gravwave.training import CascadeParams, fit_cascade

    p = syn.SyntheticParams(duration=32.0, seed=3, t0=README_GPS - 64.0)
    segs = [syn.generate(p, k) for k in range(3)]

    def join(name: str, values: list[np.ndarray]) -> TimeSeries:
        first = segs[0].strain
        return TimeSeries(
            np.concatenate(values), t0=first.t0, sample_rate=first.sample_rate, name=name
        )

    strain = join(segs[0].strain.name, [s.strain.value for s in segs[:2]])
    wit = TimeSeriesDict(
        (c, join(c, [s.witnesses[c].value for s in segs[:2]])) for c in segs[0].witnesses
    )
    cp = CascadeParams(
        linear_bands=[tuple(p.linear_band)],
        network_band=tuple(p.bands["bilinear"]),
        n_taps=64,
        window=4.0,
        stride=1.0,
        val_fraction=0.25,
        epochs=1,
        max_steps_per_epoch=2,
        batch_size=4,
        network={"widths": [4, 8], "dilations": [1]},
        name="readme-cascade",
    )
    fit_cascade(strain, wit, cp, workdir=walk.root / "cascade-fit").save(walk.root / "cascade.pt")
    seg = TimeSeriesDict({syn.STRAIN_CHANNEL: segs[2].strain, **segs[2].witnesses})
    assert segs[2].strain.t0.value == README_GPS
    write_multichannel_hdf5(walk.root / "V-V1_SEGMENT-1262304178-32.h5", seg)
    (walk.root / "channels.txt").write_text("\n".join(seg) + "\n")


def _noise_frames(walk: Walk) -> None:
    """``frames/``: the README's segment and the two 32-s segments after it, for
    ``cascade.pt``, named as frames are (after ``noise_inputs``)."""
    import shutil

    from gwpy.timeseries import TimeSeriesDict

    from gravwave import synthetic as syn
    from gravwave.io import write_multichannel_hdf5

    frames = walk.root / "frames"
    frames.mkdir()
    shutil.copy(walk.root / "V-V1_SEGMENT-1262304178-32.h5", frames)
    p = syn.SyntheticParams(duration=32.0, seed=3, t0=README_GPS - 64.0)
    for k in (3, 4):
        s = syn.generate(p, k)
        seg = TimeSeriesDict({syn.STRAIN_CHANNEL: s.strain, **s.witnesses})
        write_multichannel_hdf5(frames / f"V-V1_SEGMENT-{s.strain.t0.value:.0f}-32.h5", seg)


def _fake_sbatch(walk: Walk) -> None:
    """``bin/sbatch``: records the script it is given and answers like ``--parsable``."""
    exe = walk.root / "bin" / "sbatch"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text('#!/bin/sh\nfor a; do last=$a; done\ncp "$last" "$(dirname "$0")/job.sbatch"\n'
                   "echo '4242;cluster'\n")  # fmt: skip
    exe.chmod(0o755)


PREP: dict[str, Callable[[Walk], None]] = {
    "months": _months,
    "era5land_files": _era5land_files,
    "noise_inputs": _noise_inputs,
    "noise_frames": _noise_frames,
    "fake_sbatch": _fake_sbatch,
}


@pytest.fixture(scope="session")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    root = tmp_path_factory.mktemp("readme")
    (root / "hydrology").symlink_to(ROOT / "hydrology")  # hydrology/configs/... as in a clone
    (root / "run.yaml").write_text(TOY_RUN)
    (root / "incoming").mkdir()
    w = Walk(root, prep=PREP)
    try:
        yield w
    finally:
        w.stop_background()  # only what this walk started, by process group


# -- checks of what cannot run here -------------------------------------------------------------
def _ci_runs_the_readme_test_command() -> None:
    """CI (``.ci/run``) runs exactly the README's setup-and-test line; this test is part of
    the suite it starts, so the line ran when this runs in CI."""
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip()]
    assert lines[-1] == README_TEST_LINE


def _setup_script_parses() -> None:
    """``scripts/setup.sh`` is valid bash and installs the pinned torch first (it needs a
    package index, so CI runs it, not this test)."""
    proc = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "setup.sh")], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert "torch==2.13.0" in (ROOT / "scripts" / "setup.sh").read_text()


def _demo_runs_every_science_domain() -> None:
    """``twins demo`` runs the hydrology then the gravwave demo (the two runs of its entry)."""
    from twins.domains import demo_domains

    assert [d.name for d in demo_domains(None)] == ["hydrology", "gravwave"]


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _docker_cpu_build() -> None:
    """``docker build -t twins:cpu .``: the CPU variant is the default, and the container CI
    (``ci/pipeline.py``) builds the same tag from the same context."""
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", _dockerfile(), flags=re.M)
    spec = importlib.util.spec_from_file_location("ci_pipeline", ROOT / "ci" / "pipeline.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.steps()[0][:4] == ["docker", "build", "-t", "twins:cpu"]


def _docker_cuda_build() -> None:
    """``--build-arg TORCH_VARIANT=cu128``: the variant picks torch's wheel index."""
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in _dockerfile()


def _docker_run_is_twins() -> None:
    """``docker run ... twins:cpu demo --workdir /out`` is ``twins demo --workdir /out``
    (the first README command's demo, run above)."""
    assert re.search(r'^ENTRYPOINT \["twins"\]$', _dockerfile(), flags=re.M)


def _mlflow_pin_matches() -> None:
    """The server's ``pip install "mlflow>=3.17,<3.18"`` is the clients' pin."""
    assert '"mlflow>=3.17,<3.18"' in (ROOT / "pyproject.toml").read_text()


# -- after-checks of some steps ---------------------------------------------------------------
def _twin_version(path: Path) -> int:
    return int(json.loads((path / "twin.json").read_text())["version"])


def _cron_nothing_new_is_success(walk: Walk) -> None:
    """The same cron line again: the month is in the twin, ``twins twin update`` exits 10
    and the line as a whole 0; the twin keeps its version."""
    twin = walk.root / "twins-demo" / "hydrology" / "drought-twin"
    version = _twin_version(twin)
    proc = subprocess.run(
        ["/bin/sh", "-c", walk.fill(CRON_LINE)],
        cwd=walk.root,
        env=walk.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _twin_version(twin) == version


def _batch_rerun_skips(walk: Walk) -> None:
    """The same batch command again: every segment is finished, nothing is cleaned."""
    res = Run(BATCH_CLEAN_ARGS).execute(walk)
    assert res.rc == 0, res.err[-3000:]
    assert "cleaned 0, skipped 3 (finished before), failed 0 of 3 segment(s)" in res.out


def _submitted_script(walk: Walk) -> None:
    script = (walk.root / "bin" / "job.sbatch").read_text()
    assert "#SBATCH --nodes=4" in script and "--nproc_per_node=4" in script


def _srun_trained_two_ranks(walk: Walk) -> None:
    summary = json.loads((walk.root / "runs" / "readme-srun" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["launcher"] == "slurm"


def _served_run_logged(walk: Walk) -> None:
    from mlflow.tracking import MlflowClient

    summary = json.loads((walk.root / "runs" / "readme-served" / "summary.json").read_text())
    run = MlflowClient(walk.values["MLFLOW_TRACKING_URI"]).get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    walk.stop_background()  # nothing after this needs the server


# -- the table ---------------------------------------------------------------------------------
DROUGHT_TWIN = "twins-demo/hydrology/drought-twin"
DROUGHT_DEMO = Run(
    "demo --domain hydrology --workdir twins-demo/hydrology task.params.preset=tiny",
    expect=("kind         hydrology",),
)
NOISE_DEMO = Run(
    "demo --domain gravwave --workdir twins-demo/gravwave gravwave.segment=32 "
    "gravwave.train_segments=3 gravwave.steps=2 gravwave.twin_segments=2",
    expect=("gravwave: out-of-band ASD ratio",),
)
DROUGHT_UPDATE = Run(
    f"twin update {DROUGHT_TWIN} --data era5land_2021-03.nc",
    after=(DROUGHT_DEMO,),
    prep=("months",),
    fields=(("noop", False), ("cursor", "2008-01")),
)
# cron: the month in incoming/ is new the first time (exit 0) and not the second (10 -> 0)
CRON_LINE = (
    f"cd {{root}} && {VENV_BIN}/twins twin update {{root}}/{DROUGHT_TWIN} --data "
    "{root}/incoming/*.nc; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 10 ]"
)
NOISE_INIT = Run("twin init mytwin --kind gravwave --cleaner cascade.pt", prep=("noise_inputs",))
NOISE_UPDATE = Run(
    'twin update mytwin --data V-V1_SEGMENT-1262304178-32.h5 --channels "$(cat channels.txt | '
    'paste -sd,)"',
    after=(NOISE_INIT,),
    fields=(("version", 1), ("noop", False)),
)
BATCH_CLEAN_ARGS = (
    "gravwave clean frames/ --cleaner cascade.pt --channels channels.txt --out cleaned/"
)
BATCH_CLEAN = Run(
    BATCH_CLEAN_ARGS,
    prep=("noise_inputs", "noise_frames"),
    expect=("cleaned 3, skipped 0 (finished before), failed 0 of 3 segment(s)",),
    then=_batch_rerun_skips,
)
SEGMENT_LIST = Shell("ls frames/*.h5 > segments.txt", prep=("noise_inputs", "noise_frames"))
BATCH_ARRAY = (
    'launch slurm run.yaml --kind array --inputs segments.txt --command "gravwave clean '
    '--cleaner cascade.pt --out cleaned/"'
)
TOY_TRAIN = Run("train run.yaml")
MLFLOW_SERVER = Server(
    "mlflow server --backend-store-uri sqlite:///$HOME/mlflow/mlflow.db "
    "--artifacts-destination $HOME/mlflow/artifacts --host 127.0.0.1 --port {mlflow_port} "
    '--allowed-hosts "127.0.0.1:{mlflow_port}" --workers 1',
    health="http://127.0.0.1:{mlflow_port}/health",
    port="mlflow_port",
)
MLFLOW_EXPORT = Export(
    "MLFLOW_TRACKING_URI", "http://127.0.0.1:{mlflow_port}", after=(MLFLOW_SERVER,)
)
RAY_TEST = "tests/distributed/test_ray_train.py::"
K8S_CRON = "launch k8s run.yaml --kind twin-update --twin /data/drought-twin --interlink"

COMMANDS: dict[str, dict[str, Entry]] = {
    "twins — AI digital twins for science": {
        "bash scripts/setup.sh && .venv/bin/twins demo": entry(
            Check(_setup_script_parses),
            Check(_demo_runs_every_science_domain),
            DROUGHT_DEMO,
            NOISE_DEMO,
            slow=True,
        ),
        README_TEST_LINE: entry(
            Check(_setup_script_parses), Check(_ci_runs_the_readme_test_command)
        ),
    },
    "The drought twin (`hydrology/`)": {
        "twins train hydrology/configs/demo.yaml": entry(
            Run("train hydrology/configs/tiny.yaml", expect=()), slow=True
        ),
        "twins train hydrology/configs/demo.yaml task.params.path=/data/era5land/*.nc": entry(
            Run(
                "train hydrology/configs/tiny.yaml task.params.path=era5land/*.nc "
                "name=drought-files",
                prep=("era5land_files",),
            ),
            slow=True,
        ),
        "twins dryrun hydrology/configs/demo.yaml --workers 8 --nodes 2": entry(
            Run(
                "dryrun hydrology/configs/tiny.yaml --workers 8 --nodes 2",
                expect=("8 worker(s) on 2 node(s)", "-> output (2, 6) float32"),
            )
        ),
        f"twins twin status {DROUGHT_TWIN}": entry(
            Run(f"twin status {DROUGHT_TWIN}", after=(DROUGHT_DEMO,), expect=("hydrology",))
        ),
        f"twins twin update {DROUGHT_TWIN} --data era5land_2021-03.nc": entry(DROUGHT_UPDATE),
        f"twins twin simulate {DROUGHT_TWIN} --precip-scale 0.7 --temp-shift 2 --region 49.0 "
        "49.6 5.0 5.6 --months 3": entry(
            Run(
                f"twin simulate {DROUGHT_TWIN} --precip-scale 0.7 --temp-shift 2 --region 49.0 "
                "49.6 5.0 5.6 --months 3",
                after=(DROUGHT_UPDATE,),
                fields=(("scenario.precip_scale", 0.7), ("variables.scenario_spi_3", ...)),
            )
        ),
    },
    "The Virgo noise twin (`gravwave/`)": {
        "twins twin init mytwin --kind gravwave --cleaner cascade.pt": entry(NOISE_INIT),
        'twins twin update mytwin --data V-V1_SEGMENT-1262304178-32.h5 --channels "$(cat '
        'channels.txt | paste -sd,)"': entry(NOISE_UPDATE),
        "twins twin simulate mytwin --gain-scale 1.5": entry(
            Run(
                "twin simulate mytwin --gain-scale 1.5",
                after=(NOISE_UPDATE,),
                fields=(("gain_scale", 1.5),),
            )
        ),
        "twins twin status mytwin": entry(
            Run("twin status mytwin", after=(NOISE_UPDATE,), expect=("last quality",))
        ),
        "twins twin history mytwin": entry(
            Run("twin history mytwin", after=(NOISE_UPDATE,), expect=("v0 ", "init", "v1 "))
        ),
        "twins twin rollback mytwin --to 0": entry(
            Run(
                "twin rollback mytwin --to 0",
                after=(NOISE_UPDATE,),
                fields=(("restored", 0), ("undone", [1, 1]), ("action", "restore")),
            )
        ),
    },
    "Cleaning a long stretch in a batch": {
        f"twins {BATCH_CLEAN_ARGS}": entry(BATCH_CLEAN),
        "twins gravwave clean frames/ --cleaner cascade.pt --out cleaned/ --workers 8": entry(
            Elsewhere(
                "tests/gravwave/test_batch.py::test_ray_two_workers_match_a_serial_run",
                ('"--workers"', '"2"', "stretch.listing(stretch.reference)"),
                "2 Ray workers on a local Ray (2 cores here), the serial run's bytes",
            ),
            Elsewhere(
                "tests/gravwave/test_batch.py::test_ray_joins_an_existing_cluster_with_address",
                ('"--address"', '"start"', '"--head"'),
                "an existing Ray cluster",
            ),
        ),
        "ls frames/*.h5 > segments.txt": entry(SEGMENT_LIST),
        f"twins {BATCH_ARRAY}": entry(
            Run(
                BATCH_ARRAY,
                after=(SEGMENT_LIST,),
                expect=(
                    "#SBATCH --array=0-2",
                    "frames/V-V1_SEGMENT-1262304242-32.h5",
                    'gravwave clean --cleaner cascade.pt --out cleaned/ "$input"',
                ),
            ),
            Elsewhere(
                "tests/launch/test_slurm_array_real.py::"
                "test_array_job_cleans_each_segment_like_a_serial_run",
                ('"--kind", "array", "--inputs"', "submit(", "COMPLETED"),
                "the array on a real Slurm, each task's output the serial run's",
            ),
        ),
    },
    "What is here": {
        "twins train run.yaml": entry(TOY_TRAIN),
        "torchrun --nproc_per_node=4 -m twins train run.yaml": entry(
            Elsewhere(
                "tests/twins/test_cli.py::test_torchrun_cli_trains_and_tracks_on_rank0",
                ('"torch.distributed.run"', '"--nproc_per_node=2"', '"twins"', '"train"'),
                "torchrun with 2 ranks (2 cores here)",
            )
        ),
        "srun --ntasks=8 python -m twins train run.yaml": entry(
            SrunStep(
                "-m twins train run.yaml name=readme-srun",
                after=(TOY_TRAIN,),  # the launching process made the store (stack.md)
                then=_srun_trained_two_ranks,
            ),
            distributed=True,
        ),
        "twins train run.yaml --backend ray --workers 4": entry(
            Elsewhere(
                RAY_TEST + "test_ray_two_workers_match_one_process",
                ("distributed.backend=ray", "distributed.workers=2"),
                "local Ray with 2 workers (2 cores here)",
            ),
            Elsewhere(
                RAY_TEST + "test_ray_joins_an_existing_cluster_with_address",
                ('"--backend"', '"ray"', '"--workers"'),
                "the flags through twins.cli.main",
            ),
        ),
        "twins train run.yaml --backend ray --workers 16 --address ray://head:10001": entry(
            Elsewhere(
                RAY_TEST + "test_ray_joins_an_existing_cluster_with_address",
                ('"--address"', "_ray_head("),
                "joining an external Ray cluster by address",
            ),
            Elsewhere(RAY_TEST + "_ray_head", ('"start"', '"--head"'), "the external Ray cluster"),
        ),
        "RAY_ADDRESS=head:6379 twins train run.yaml --backend ray --workers 16": entry(
            Elsewhere(
                RAY_TEST + "test_ray_joins_an_existing_cluster_with_address",
                ('os.environ["RAY_ADDRESS"]',),
                "joining through RAY_ADDRESS",
            )
        ),
        "twins train run.yaml --resume": entry(Run("train run.yaml --resume", after=(TOY_TRAIN,))),
    },
    "Running on HPC and Kubernetes": {
        "twins launch slurm run.yaml --nodes 4 --tasks-per-node 4": entry(
            Run(
                "launch slurm run.yaml --nodes 4 --tasks-per-node 4",
                expect=("#SBATCH --nodes=4", "# dry run:", "--nproc_per_node=4"),
            )
        ),
        "twins launch slurm run.yaml --nodes 4 --tasks-per-node 4 --submit": entry(
            Run(
                "launch slurm run.yaml --nodes 4 --tasks-per-node 4 --submit",
                prep=("fake_sbatch",),
                env=(("PATH", f"{{root}}/bin:{os.environ.get('PATH', '')}"),),
                expect=("4242",),
                then=_submitted_script,
            )
        ),
        "twins launch slurm run.yaml --kind ray --nodes 2": entry(
            Run(
                "launch slurm run.yaml --kind ray --nodes 2",
                expect=("#SBATCH --nodes=2", "--backend ray --address"),
            )
        ),
        "twins launch slurm run.yaml --kind twin-update --twin /scratch/drought-twin": entry(
            Run(
                "launch slurm run.yaml --kind twin-update --twin /scratch/drought-twin",
                expect=("twin update /scratch/drought-twin",),
            )
        ),
        "twins launch k8s run.yaml": entry(Run("launch k8s run.yaml", expect=("kind: Job",))),
        "twins launch k8s run.yaml --kind ray": entry(
            Run("launch k8s run.yaml --kind ray", expect=("kind: RayCluster",))
        ),
        f"twins {K8S_CRON}": entry(
            Run(K8S_CRON, expect=("kind: CronJob", "interlink/no-schedule", "/data/drought-twin"))
        ),
        "0 6 * * * cd /srv/twins && .venv/bin/twins twin update /srv/drought-twin --data "
        "/incoming/*.nc; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 10 ]": entry(
            Shell(
                CRON_LINE,
                after=(DROUGHT_UPDATE,),
                prep=("months",),
                then=_cron_nothing_new_is_success,
            )
        ),
    },
    "Containers": {
        "docker build -t twins:cpu .": entry(
            Check(_docker_cpu_build),
            Elsewhere(
                "tests/ci/test_container_pipeline.py::test_local_checks_pass",
                ('"--check"',),
                "the container CI's checks of the Dockerfile",
            ),
        ),
        "docker build -t twins:cu128 --build-arg TORCH_VARIANT=cu128 .": entry(
            Check(_docker_cuda_build),
            Elsewhere(
                "tests/ci/test_container_pipeline.py::test_dry_run_lists_build_test_convert",
                ("TORCH_VARIANT=cu128",),
                "the container CI builds the CUDA variant",
            ),
        ),
        "docker run --rm -v $PWD/out:/out twins:cpu demo --workdir /out": entry(
            Check(_docker_run_is_twins)
        ),
    },
    "A shared MLflow server for a team": {
        'pip install "mlflow>=3.17,<3.18"': entry(Check(_mlflow_pin_matches)),
        "mlflow server --backend-store-uri sqlite:///$HOME/mlflow/mlflow.db "
        "--artifacts-destination $HOME/mlflow/artifacts --host 0.0.0.0 --port 5000 "
        '--allowed-hosts "mlflow.example.org:5000" --workers 1': entry(MLFLOW_SERVER, slow=True),
        "export MLFLOW_TRACKING_URI=http://mlflow.example.org:5000": entry(
            MLFLOW_EXPORT, slow=True
        ),
        "twins train run.yaml": entry(
            Run(
                "train run.yaml name=readme-served",
                after=(MLFLOW_EXPORT,),
                env=(("MLFLOW_TRACKING_URI", "{MLFLOW_TRACKING_URI}"),),
                then=_served_run_logged,
            ),
            slow=True,
        ),
    },
}


# -- the tests ---------------------------------------------------------------------------------
def _cases() -> list[Any]:
    cases = []
    for section, command in readme_commands(README.read_text()):
        known = COMMANDS.get(section, {}).get(command)
        marks = known.marks if known else ()
        cases.append(pytest.param(section, command, marks=marks, id=f"{section[:20]}|{command}"))
    return cases


def test_table_matches_the_readme() -> None:
    """Every README command has an entry, and every entry is a README command."""
    shown = readme_commands(README.read_text())
    assert len(shown) >= 30, "the README parser found too few commands"
    table = {(s, c) for s, cmds in COMMANDS.items() for c in cmds}
    missing = [f"{s!r}: {c!r}" for s, c in shown if (s, c) not in table]
    stale = [f"{s!r}: {c!r}" for s, c in sorted(table - set(shown))]
    how = "README commands with no entry in COMMANDS (say how the suite runs them):\n"
    assert not missing, how + "\n".join(missing)
    assert not stale, "COMMANDS entries no longer in the README:\n" + "\n".join(stale)


def test_parser_reads_continuations_comments_and_sections() -> None:
    text = (
        "# Title\n```bash\n# a comment\nx --a 1 \\\n      --b 2   # trailing\n\n```\n"
        "## Part\n  ```bash\n  y  z\n  ```\n```python\nnot = 'a command'\n```\n"
    )
    assert readme_commands(text) == [("Title", "x --a 1 --b 2"), ("Part", "y z")]


@pytest.mark.parametrize(("section", "command"), _cases())
def test_readme_command(section: str, command: str, walk: Walk) -> None:
    known = COMMANDS.get(section, {}).get(command)
    assert known is not None, f"no entry in COMMANDS for {command!r} (section {section!r})"
    for step in known.steps:
        step.verify(walk)
