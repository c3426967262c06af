"""Workflows for runs on a real HTCondor pool: the scenarios of ``tests/data/real-htcondor``.

::

    python -m tests.support.real_pool SCENARIO WORKDIR [--memory-policy P] [--set KEY=VALUE ...]

writes a repository, a graph and a submit YAML under WORKDIR and runs ``bps prepare`` on it;
the printed submit directory is then submitted with ``bps submit``. Scenarios (the toy tasks
of `tests.support.toy_pipeline`, per exposure ``CamE`` and detector):

- ``wide``: 5 exposures x 10 detectors, ``make`` -> ``double`` -> ``total`` per exposure
  (50 -> 50 -> 5, unclustered); ``--delay S`` slows every quantum (for cancel);
- ``failure``: 2 x 3, the same shape, the ``make`` quanta of detector 0 raise (exit 1);
- ``memhog``: 1 x 1, one ``make`` quantum that touches ``--hog-mb`` MB (default 3072) and
  holds it ``--hold-s`` seconds: over the default 2048 MB request, for memory-hold runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from supertask.config import Field

from . import toy_pipeline as toy

ROOT = Path(__file__).resolve().parents[2]
#: The module path jobs import the tasks from (also when this file runs as __main__).
MODULE = "tests.support.real_pool"


class MemHogConfig(toy.MakeConfig):
    hogMb = Field(dtype=int, default=3072, doc="MB to allocate and touch")
    holdS = Field(dtype=float, default=40.0, doc="seconds to hold the memory")


class MemHogTask(toy.MakeTask):
    """`MakeTask` that first touches ``hogMb`` MB and holds it ``holdS`` seconds."""

    ConfigClass = MemHogConfig
    _DefaultName = "memHog"

    def run(self, seed):
        buf = b"\x01" * (self.config.hogMb << 20)  # every page written: resident
        print(f"memHog: holding {len(buf) >> 20} MB for {self.config.holdS} s", flush=True)
        time.sleep(self.config.holdS)
        del buf
        return super().run(seed)


def build(
    work: Path,
    exposures: int,
    detectors: int,
    *,
    layers: int = 3,
    fail: int | None = None,
    hog: tuple[int, float] | None = None,
    run: str = "real/pool",
) -> tuple[Path, Path]:
    """Repository with one seed per (exposure, detector) and the graph; returns (repo, graph).

    ``layers`` 3: make -> double -> total per exposure; 1: make only. ``fail``: the detector
    whose make quanta raise; ``hog``: (MB, seconds) every make holds."""
    from supertask.graph.quantum_graph import QuantumGraph
    from supertask.quantum import Quantum
    from supertask.repo.butler import Butler
    from supertask.repo.dataid import DataId
    from supertask.repo.dataset import Dataset, DatasetType

    repo = work / "repo"
    Butler.create(repo).close()
    butler = Butler(repo, run=toy.SEEDS_RUN)
    try:
        seeds = [
            butler.put({"detector": d, "value": d}, toy.SEED, {"instrument": f"Cam{e}", "detector": d})
            for e in range(exposures)
            for d in range(detectors)
        ]
    finally:
        butler.close()
    made = DatasetType("made", toy.DETECTOR_UNITS, "StructuredDataDict")
    doubled = DatasetType("doubled", toy.DETECTOR_UNITS, "StructuredDataDict")
    quanta = []
    for s in seeds:
        quanta.append(
            Quantum(
                "make",
                DataId(s.dataId),
                {"seed": [Dataset(toy.SEED, s.dataId, id=s.id, run=s.run)]},
                {"made": [Dataset(made, s.dataId)]},
            )
        )
    if layers == 3:
        for s in seeds:
            quanta.append(
                Quantum(
                    "double",
                    DataId(s.dataId),
                    {"made": [Dataset(made, s.dataId)]},
                    {"doubled": [Dataset(doubled, s.dataId)]},
                )
            )
        for e in range(exposures):
            cam = DataId(instrument=f"Cam{e}")
            inputs = [Dataset(doubled, s.dataId) for s in seeds if s.dataId["instrument"] == f"Cam{e}"]
            quanta.append(Quantum("total", cam, {"doubled": inputs}, {"total": [Dataset(toy.TOTAL, cam)]}))
    tasks: dict = {"make": {"class": f"{toy.__name__}.MakeTask", "config": {"made": "made"}}}
    if hog:
        tasks["make"] = {
            "class": f"{MODULE}.MemHogTask",
            "config": {"made": "made", "hogMb": hog[0], "holdS": hog[1]},
        }
    if fail is not None:
        tasks["make"]["config"]["failDetector"] = fail
    if layers == 3:
        tasks["double"] = {"class": f"{toy.__name__}.MakeTask", "config": {"seed": "made", "made": "doubled"}}
        tasks["total"] = {"class": f"{toy.__name__}.TotalTask", "config": {"made": "doubled"}}
    graph = work / "graph.qgraph"
    QuantumGraph(
        quanta,
        pipelineYaml=yaml.safe_dump({"inputs": ["seed"], "tasks": tasks}),
        metadata={"output_run": run, "input_collections": [toy.SEEDS_RUN]},
    ).save(graph)
    return repo, graph


def prepare(
    work: Path, repo: Path, graph: Path, name: str, run: str, site: dict, extra: dict | None = None
) -> Path:
    """``bps prepare`` for htcondor_shared; returns the submit directory."""
    config = work / f"{name}.yaml"
    submit = work / "submit" / name
    data = {
        "qgraph": str(graph),
        "repo": str(repo),
        "output_run": run,
        "submit_dir": str(submit),
        "wms": "htcondor",
        "compute_site": "htcondor_shared",
        "site": {"environment": {"PYTHONPATH": str(ROOT)}, **site},
        **(extra or {}),
    }
    config.write_text(yaml.safe_dump(data))
    bps = Path(sys.executable).parent / "bps"
    subprocess.run([str(bps), "prepare", str(config)], check=True)
    return submit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=["wide", "failure", "memhog"])
    p.add_argument("workdir", type=Path)
    p.add_argument("--memory-policy", default=None)
    p.add_argument("--memory-max-mb", type=int, default=None)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--hog-mb", type=int, default=3072)
    p.add_argument("--hold-s", type=float, default=40.0)
    args = p.parse_args()
    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    run = f"real/{args.scenario}/{int(time.time())}"
    site: dict = {"condor": {}}
    if args.memory_policy:
        site["condor"]["memory_policy"] = args.memory_policy
    if args.delay:
        site["environment"] = {"PYTHONPATH": str(ROOT), "TOY_DELAY": str(args.delay)}
    extra = {"retry": {"memory_max_mb": args.memory_max_mb}} if args.memory_max_mb else None
    if args.scenario == "wide":
        repo, graph = build(work, 5, 10, run=run)
    elif args.scenario == "failure":
        repo, graph = build(work, 2, 3, fail=0, run=run)
    else:
        repo, graph = build(work, 1, 1, layers=1, hog=(args.hog_mb, args.hold_s), run=run)
    print(prepare(work, repo, graph, args.scenario, run, site, extra))


if __name__ == "__main__":
    main()
