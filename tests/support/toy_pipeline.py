"""The toy pipeline of the batch tests, and the stand-in backend of the ``run_quantum`` unit tests.

The local, HTCondor and Pegasus end-to-end tests run the same two tasks: `MakeTask`, per
detector, multiplies a seed; `TotalTask`, per instrument, sums what it made. This module is
their one copy; a test file describes its variant (labels, dataset name, multiplier, seeds)
with a `ToyPipeline` instead of copying the code.

Batch jobs build the tasks from their class path in the pipeline YAML, in subprocesses: a
job's ``PYTHONPATH`` must hold `TASKS_PYTHONPATH` (`use_toy_tasks` sets it for jobs that
inherit the environment; a site whose jobs inherit nothing names it in its ``environment``).
Jobs import this module, so what only the tests use (registry, graph file, click) is
imported inside the functions that use it.

`StandInBackend` plays the graph file, the pipeline and the datastore for an in-process
``run_job``: ``make -> double`` per detector, and ``total`` gathering every ``doubled``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from supertask.config import Config, DatasetField, Field
from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType
from supertask.supertask import SuperTask
from supertask.task import NoWorkFound, Struct

if TYPE_CHECKING:
    import pytest

#: The module path of the tasks in pipeline YAML, as this module was imported (``support.toy_pipeline``
#: when pytest put ``tests/`` on ``sys.path``, ``tests.support.toy_pipeline`` from the repository root).
TASK_MODULE = __name__
#: The directory to put on a job's ``PYTHONPATH`` so that ``TASK_MODULE`` imports there too.
TASKS_PYTHONPATH = str(Path(__file__).resolve().parents[TASK_MODULE.count(".")])
SEEDS_RUN = "seeds"
DETECTOR_UNITS = ("instrument", "detector")


# -- the toy tasks ---------------------------------------------------------------------------------


class MakeConfig(Config):
    seed = DatasetField(doc="in", units=DETECTOR_UNITS, storageClass="StructuredDataDict", name="seed")
    made = DatasetField(
        doc="out", units=DETECTOR_UNITS, storageClass="StructuredDataDict", name="made", role="output"
    )
    multiplier = Field(dtype=int, default=2, doc="made value = seed value * multiplier")
    failDetector = Field(dtype=int, default=-1, doc="raise on this detector")


class MakeTask(SuperTask):
    """Per detector: ``{"detector", "value": seed value * multiplier}``; raises on ``failDetector``.

    ``TOY_DELAY`` (seconds, in the environment) slows every quantum down, for tests that
    kill or cancel a job while it runs.
    """

    ConfigClass = MakeConfig
    _DefaultName = "make"
    quantumUnits = DETECTOR_UNITS

    def run(self, seed):
        if seed["detector"] == self.config.failDetector:
            raise RuntimeError(f"{self.label} fails on purpose")
        delay = float(os.environ.get("TOY_DELAY", "0"))
        if delay:
            time.sleep(delay)
        return Struct(made={"detector": seed["detector"], "value": seed["value"] * self.config.multiplier})


class TotalConfig(Config):
    made = DatasetField(doc="in", units=DETECTOR_UNITS, storageClass="StructuredDataDict", name="made")
    total = DatasetField(
        doc="out", units=("instrument",), storageClass="StructuredDataDict", name="total", role="output"
    )


class TotalTask(SuperTask):
    """Per instrument: ``{"sum": total of every made value}``."""

    ConfigClass = TotalConfig
    _DefaultName = "total"
    quantumUnits = ("instrument",)

    def run(self, made):
        return Struct(total={"sum": sum(m["value"] for m in made.values())})


class TwinConfig(Config):
    seed = DatasetField(doc="in", units=DETECTOR_UNITS, storageClass="StructuredDataDict", name="seed")
    made = DatasetField(
        doc="out", units=DETECTOR_UNITS, storageClass="StructuredDataDict", name="made", role="output"
    )
    noise = DatasetField(
        doc="out", units=DETECTOR_UNITS, storageClass="StructuredDataDict", name="noise", role="output"
    )
    multiplier = Field(dtype=int, default=2, doc="made value = seed value * multiplier")


class TwinTask(SuperTask):
    """Per detector, two outputs: ``made`` (as `MakeTask`) and ``noise``, which differs on every run.

    The nondeterministic task of the integrity tests: a rerun writes different bytes, so
    a registered file that was replaced shows as a checksum mismatch; two outputs per
    quantum show a quantum registered by halves. ``TOY_DELAY`` slows it down as `MakeTask`.
    """

    ConfigClass = TwinConfig
    _DefaultName = "twin"
    quantumUnits = DETECTOR_UNITS

    def run(self, seed):
        delay = float(os.environ.get("TOY_DELAY", "0"))
        if delay:
            time.sleep(delay)
        made = {"detector": seed["detector"], "value": seed["value"] * self.config.multiplier}
        return Struct(made=made, noise={"detector": seed["detector"], "nonce": os.urandom(8).hex()})


def twin_pipeline_yaml(multiplier: int = 2) -> str:
    """``twin`` (per detector: ``made`` and ``noise``) then ``total`` (sums ``made``)."""
    return yaml.safe_dump(
        {
            "inputs": ["seed"],
            "tasks": {
                "twin": {"class": f"{TASK_MODULE}.TwinTask", "config": {"multiplier": multiplier}},
                "total": {"class": f"{TASK_MODULE}.TotalTask"},
            },
        }
    )


def twin_quanta(seeds: Iterable[Dataset]) -> list[Quantum]:
    """One ``twin`` quantum per seed (outputs ``made`` and ``noise``), then ``total``."""
    made_type = DatasetType("made", DETECTOR_UNITS, "StructuredDataDict")
    noise_type = DatasetType("noise", DETECTOR_UNITS, "StructuredDataDict")
    quanta, made = [], []
    for s in seeds:
        out = Dataset(made_type, s.dataId)
        made.append(out)
        inputs = {"seed": [Dataset(SEED, s.dataId, id=s.id, run=s.run)]}
        outputs = {"made": [out], "noise": [Dataset(noise_type, s.dataId)]}
        quanta.append(Quantum("twin", DataId(s.dataId), inputs, outputs))
    cam = DataId(instrument="Cam")
    quanta.append(Quantum("total", cam, {"made": list(made)}, {"total": [Dataset(TOTAL, cam)]}))
    return quanta


SEED = DatasetType("seed", DETECTOR_UNITS, "StructuredDataDict")
TOTAL = DatasetType("total", ("instrument",), "StructuredDataDict")


def use_toy_tasks(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the toy tasks importable by jobs that inherit this environment; returns the path added."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TASKS_PYTHONPATH, os.environ.get("PYTHONPATH", "")]))
    return TASKS_PYTHONPATH


# -- one variant: the pipeline YAML, its repository, its graphs -------------------------------------


@dataclass(frozen=True)
class ToyPipeline:
    """One variant of the toy: what a test file calls things and which numbers it expects.

    Parameters
    ----------
    run : `str`
        The output run of the graphs.
    detectors : `tuple` [`int`]
        One seed (and one ``make`` quantum) per detector of instrument ``Cam``.
    seed_scale : `int`
        Seed value = detector * ``seed_scale``.
    multiplier : `int`
        ``MakeTask``'s multiplier.
    make, total : `str`
        The labels of the two tasks.
    made : `str`
        The dataset type name of the per-detector outputs.
    """

    run: str
    detectors: tuple[int, ...]
    seed_scale: int
    multiplier: int
    make: str = "make"
    total: str = "total"
    made: str = "made"

    @property
    def made_type(self) -> DatasetType:
        return DatasetType(self.made, DETECTOR_UNITS, "StructuredDataDict")

    def pipeline_yaml(self, fail_detector: int = -1) -> str:
        """The pipeline; ``fail_detector`` >= 0 makes that detector's ``make`` quantum raise."""
        return yaml.safe_dump(
            {
                "inputs": ["seed"],
                "tasks": {
                    self.make: {
                        "class": f"{TASK_MODULE}.MakeTask",
                        "config": {
                            "failDetector": fail_detector,
                            "multiplier": self.multiplier,
                            "made": self.made,
                        },
                    },
                    self.total: {"class": f"{TASK_MODULE}.TotalTask", "config": {"made": self.made}},
                },
            }
        )

    def make_repo(self, root: Path) -> list[Dataset]:
        """Create a repository at ``root`` holding one seed per detector in run ``seeds``."""
        from supertask.repo.butler import Butler

        Butler.create(root).close()
        butler = Butler(root, run=SEEDS_RUN)
        try:
            return [
                butler.put(
                    {"detector": d, "value": d * self.seed_scale}, SEED, {"instrument": "Cam", "detector": d}
                )
                for d in self.detectors
            ]
        finally:
            butler.close()

    def quanta(self, seeds: Iterable[Dataset]) -> list[Quantum]:
        """One ``make`` quantum per seed, then the ``total`` quantum gathering all they make."""
        quanta, made = [], []
        for s in seeds:
            out = Dataset(self.made_type, s.dataId)
            made.append(out)
            inputs = {"seed": [Dataset(SEED, s.dataId, id=s.id, run=s.run)]}
            quanta.append(Quantum(self.make, DataId(s.dataId), inputs, {self.made: [out]}))
        cam = DataId(instrument="Cam")
        quanta.append(Quantum(self.total, cam, {self.made: list(made)}, {"total": [Dataset(TOTAL, cam)]}))
        return quanta

    def write_graph(self, path: Path, seeds: Iterable[Dataset], fail_detector: int = -1) -> Path:
        """Save the graph over ``seeds`` (as `make_repo` returned them) to ``path``."""
        from supertask.graph.quantum_graph import QuantumGraph

        QuantumGraph(
            self.quanta(seeds),
            pipelineYaml=self.pipeline_yaml(fail_detector),
            metadata={"output_run": self.run, "input_collections": [SEEDS_RUN]},
        ).save(path)
        return path

    def set_up(self, root: Path, monkeypatch: pytest.MonkeyPatch, **submit: Any) -> ToyRepo:
        """`use_toy_tasks`, then a repository at ``root / "repo"``; ``submit``: keys of every submit YAML."""
        use_toy_tasks(monkeypatch)
        repo = root / "repo"
        return ToyRepo(self, root, repo, self.make_repo(repo), submit)


@dataclass
class ToyRepo:
    """A test's toy repository with its seeds, writing graphs and submit YAMLs beside it under ``root``."""

    pipeline: ToyPipeline
    root: Path
    repo: Path
    seeds: list[Dataset]
    submit: dict[str, Any] = field(default_factory=dict)

    def submit_yaml(self, name: str, fail_detector: int = -1, **extra: Any) -> Path:
        """Write ``<name>.qgraph`` and ``<name>.yaml`` (submit directory ``submit/<name>``), or rewrite them."""
        data = {
            "qgraph": str(self.pipeline.write_graph(self.root / f"{name}.qgraph", self.seeds, fail_detector)),
            "repo": str(self.repo),
            "output_run": self.pipeline.run,
            "submit_dir": str(self.root / "submit" / name),
            **self.submit,
            **extra,
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path


# -- what the tests read back ----------------------------------------------------------------------


def submit_dir_of(config: Path) -> Path:
    """The submit directory a submit YAML names."""
    return Path(yaml.safe_load(config.read_text())["submit_dir"])


def prepare(config: Path) -> Path:
    """``bps prepare config`` (asserting it succeeds); returns the submit directory."""
    from click.testing import CliRunner

    from bps.cli import main as bps_main

    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert result.exit_code == 0, result.output
    return submit_dir_of(config)


def query_datasets(repo: Path, run: str, name: str) -> list[Dataset]:
    """The datasets of type ``name`` registered in ``run``; none if the type was never registered."""
    from supertask.repo.butler import Butler

    butler = Butler(repo, collections=[run])
    try:
        return list(butler.registry.queryDatasets(name, [run]))
    except KeyError:  # dataset type never registered: nothing of it was made
        return []
    finally:
        butler.close()


def registered_in(repo: Path, run: str, name: str) -> dict[Any, Any]:
    """Detector (`None` for per-instrument datasets) -> object of every ``name`` registered in ``run``."""
    from supertask.repo.butler import Butler

    butler = Butler(repo, collections=[run])
    try:
        try:
            found = butler.registry.queryDatasets(name, [run])
        except KeyError:  # dataset type never registered: nothing of it was made
            return {}
        return {d.dataId.get("detector"): butler.get(d) for d in found}
    finally:
        butler.close()


def registered_checksums(
    repo: Path, run: str, names: Iterable[str] | None = None
) -> dict[tuple[str, Any], str | None]:
    """(dataset type, data ID) -> registered checksum of every dataset of ``names`` (default: all types) in ``run``."""
    from supertask.repo.butler import Butler

    butler = Butler(repo, collections=[run])
    try:
        registry = butler.registry
        if names is None:
            names = [dt.name for dt in registry.queryDatasetTypes()]
        return {
            (name, d.dataId): registry.getDatasetLocation(d)[2]
            for name in names
            for d in registry.queryDatasets(name, [run])
        }
    finally:
        butler.close()


def registered_files(repo: Path, run: str, names: Iterable[str]) -> dict[tuple[str, Any], tuple[str, str]]:
    """(dataset type, data ID) -> (path, registered checksum) of every dataset of ``names`` in ``run``.

    A type that was never registered contributes nothing (its quanta made nothing yet).
    """
    from supertask.repo.butler import Butler

    butler = Butler(repo, collections=[run])
    try:
        out = {}
        for name in names:
            try:
                found = butler.registry.queryDatasets(name, [run])
            except KeyError:
                continue
            for d in found:
                path, _, checksum = butler.registry.getDatasetLocation(d)
                out[(name, d.dataId)] = (path, checksum)
        return out
    finally:
        butler.close()


def assert_registered_files_intact(
    repo: Path, run: str, names: Iterable[str]
) -> dict[tuple[str, Any], tuple[str, str]]:
    """Every registered file of ``names`` in ``run`` matches its registered checksum; returns `registered_files`."""
    from bps.staging import checksum_file

    found = registered_files(repo, run, names)
    wrong = [key for key, (path, checksum) in found.items() if checksum_file(repo / path) != checksum]
    assert not wrong, f"registered files that do not match their checksums: {wrong}"
    return found


def run_jobs_with_file_transfer(repo: Path, submit_dir: Path, nodes: Path) -> None:
    """Run every job as HTCondor file transfer would: inputs and outputs by lfn in the job's directory,
    outputs brought back to ``SUBMIT_DIR/staged``; jobs never see the datastore."""
    import shutil
    import subprocess
    import sys

    from bps.finalize import STAGED_DIR
    from bps.workflow_io import load_workflow

    wf = load_workflow(submit_dir / "workflow.json")
    staged = submit_dir / STAGED_DIR
    staged.mkdir()
    (submit_dir / "manifests").mkdir(exist_ok=True)
    for job in wf.jobs.values():
        workdir = nodes / job.name
        workdir.mkdir(parents=True)
        for f in job.inputs:  # what the workflow system transfers in
            shutil.copyfile(repo / f.path if f.producer is None else staged / f.lfn, workdir / f.lfn)
        args = list(job.arguments)
        args[args.index("--manifest-dir") + 1] = "."
        done = subprocess.run(
            [sys.executable, "-m", "bps.run_quantum", *args, "--inputs-dir", ".", "--outputs-dir", "."],
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        for f in job.outputs:  # what it transfers back
            shutil.move(workdir / f.lfn, staged / f.lfn)
        for manifest in workdir.glob("*.manifest.json"):
            shutil.move(manifest, submit_dir / "manifests" / manifest.name)


def output_checksums(repo: Path, run: str, pattern: str = "*") -> dict[str, str]:
    """Path relative to ``repo`` -> checksum of every file of ``run`` matching ``pattern``.

    ``logs`` directories are left out: ``supertask run`` keeps per-quantum logs there, batch
    jobs keep theirs in the submit directory.
    """
    from bps.staging import checksum_file

    root = repo / run
    files = (
        p for p in sorted(root.rglob(pattern)) if p.is_file() and "logs" not in p.relative_to(root).parts
    )
    return {str(p.relative_to(repo)): checksum_file(p) for p in files}


# -- the stand-in backend of run_job ---------------------------------------------------------------

STANDIN_SEED = DatasetType("seed", ("detector",), "Json")
STANDIN_MADE = DatasetType("made", ("detector",), "Json")
STANDIN_DOUBLED = DatasetType("doubled", ("detector",), "Json")
STANDIN_TOTAL = DatasetType("total", (), "Json")
STANDIN_RUN = "out/run"


def write_stand_in_seeds(root: Path, detectors: Iterable[int]) -> Path:
    """The stand-in's inputs: ``root/in/seed/detector<d>.json`` holding ``d * 10``."""
    for det in detectors:
        f = root / "in" / "seed" / f"detector{det}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(det * 10))
    return root


def stand_in_quanta(detectors: Iterable[int]) -> list[Quantum]:
    """``make`` per detector, then ``double`` per detector, then ``total``; ids in that order from 0."""
    detectors = tuple(detectors)
    quanta: list[Quantum] = []
    for det in detectors:
        d = DataId(detector=det)
        quanta.append(
            Quantum(
                "make",
                d,
                {"seed": [Dataset(STANDIN_SEED, d, run="in")]},
                {"made": [Dataset(STANDIN_MADE, d)]},
            )
        )
    for det in detectors:
        d = DataId(detector=det)
        quanta.append(
            Quantum(
                "double", d, {"made": [Dataset(STANDIN_MADE, d)]}, {"doubled": [Dataset(STANDIN_DOUBLED, d)]}
            )
        )
    quanta.append(
        Quantum(
            "total",
            DataId(),
            {"doubled": [Dataset(STANDIN_DOUBLED, DataId(detector=x)) for x in detectors]},
            {"total": [Dataset(STANDIN_TOTAL, DataId())]},
        )
    )
    for i, q in enumerate(quanta):
        q.id = i
    return quanta


class JsonStore:
    """The stand-in datastore: ``<run>/<dataset type>/<data ID>.json``; ``written`` lists what it wrote."""

    def __init__(self, root: Path):
        self.root = root
        self.written: list[Path] = []

    def path(self, datasetType, dataId, run) -> str:
        parts = "_".join(f"{k}{v}" for k, v in dataId.items()) or "all"
        return f"{run}/{datasetType.name}/{parts}.json"

    def read(self, path: str, storageClass: str) -> Any:
        return json.loads((self.root / path).read_text())

    def write(self, obj, datasetType, dataId, run, **kwargs) -> tuple[str, int, str]:
        """Write ``obj`` as JSON at its path; ``(relative path, size, checksum)``, as `Datastore.write`."""
        from bps.staging import checksum_file

        relative = self.path(datasetType, dataId, run)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(obj))
        self.written.append(target)
        return relative, target.stat().st_size, checksum_file(target)


class StandInTask:
    """``make`` adds 1, ``double`` doubles, ``total`` sums.

    Finds no work (``NoWorkFound``) on the detectors in ``no_work``, raises on those in
    ``fail_on``; ``calls`` records what each call that got past those received.
    """

    def __init__(self, label: str, fail_on: Iterable[Any] = (), no_work: Iterable[int] = ()):
        self.label = label
        self.fail_on = set(fail_on)
        self.no_work = set(no_work)
        self.calls: list[dict[str, list[Any]]] = []

    def runQuantum(self, quantum: Quantum, butler) -> None:
        if quantum.dataId.get("detector") in self.no_work:
            raise NoWorkFound(f"no pixels on detector {quantum.dataId['detector']}")
        if dict(quantum.dataId).get("detector") in self.fail_on:
            raise RuntimeError(f"{self.label} fails on purpose for {quantum.dataId!r}")
        self.calls.append(
            {name: [d.dataId.get("detector") for d in ds] for name, ds in quantum.inputs.items()}
        )
        values = [butler.get(d) for d in quantum.iterInputs()]
        result = {
            "make": lambda: values[0] + 1,
            "double": lambda: values[0] * 2,
            "total": lambda: sum(values),
        }
        for d in quantum.iterOutputs():
            butler.put(result[self.label](), d)


class StandInBackend:
    """``run_job``'s backend over `stand_in_quanta`.

    Parameters
    ----------
    repo : `Path`
        The stand-in datastore's root.
    detectors : `tuple` [`int`]
        The detectors of the quanta.
    fail : `dict` [`str`, `set`], optional
        Label -> detectors whose quanta raise.
    no_work : `set` [`int`], optional
        Detectors on which ``make`` finds no work.
    header : `dict`, optional
        The graph header (default: an empty pipeline writing ``STANDIN_RUN``).
    """

    def __init__(
        self,
        repo: Path,
        detectors: Iterable[int],
        *,
        fail: dict[str, set[Any]] | None = None,
        no_work: Iterable[int] = (),
        header: dict | None = None,
    ):
        self.repo = repo
        self.quanta = stand_in_quanta(detectors)
        self.tasks = {
            label: StandInTask(
                label, (fail or {}).get(label, set()), set(no_work) if label == "make" else set()
            )
            for label in ("make", "double", "total")
        }
        self.header = (
            header if header is not None else {"pipelineYaml": "", "metadata": {"output_run": STANDIN_RUN}}
        )
        self.loads = 0
        #: the scratch stores jobs opened (where their quanta wrote)
        self.scratch_stores: list[JsonStore] = []
        #: (dataset type name, data ID) -> checksum of the datasets the stand-in registry holds
        self.registry: dict[tuple[str, DataId], str] = {}
        #: (dataset type name, data ID) of every registry look-up a job made
        self.lookups: list[tuple[str, DataId]] = []

    def load(self, graph, ids):
        self.loads += 1
        by_id = {q.id: q for q in self.quanta}
        return self.header, [by_id[i] for i in ids]

    def make_tasks(self, header, labels):
        return {label: self.tasks[label] for label in labels}

    def open_store(self, repo):
        return JsonStore(self.repo)

    def open_scratch_store(self, scratch):
        store = JsonStore(scratch)
        self.scratch_stores.append(store)
        return store

    def registered(self, repo, datasetType, dataId, run):
        self.lookups.append((datasetType.name, DataId(dataId)))
        return self.registry.get((datasetType.name, DataId(dataId)))
