"""A batch job with the least possible work: the trivial task, its repository and its graph.

``tests/test_job_startup.py`` checks what such a job imports and
``benchmarks/bench_run_quantum.py`` times it; both build it here. The task module is
written into ``work/pkg`` (jobs import it from their ``PYTHONPATH``) under the name the
caller gives, so it never shadows a module of the caller's own.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

#: the task: one quantum per detector, ``made = seed + 1``
TRIVIAL_TASK = """
from supertask.config import Config, DatasetField
from supertask.supertask import SuperTask
from supertask.task import Struct

class TrivialConfig(Config):
    seed = DatasetField(doc="in", units=("instrument", "detector"), storageClass="StructuredDataDict", name="seed")
    made = DatasetField(doc="out", units=("instrument", "detector"), storageClass="StructuredDataDict",
                        name="made", role="output")

class TrivialTask(SuperTask):
    ConfigClass = TrivialConfig
    _DefaultName = "trivial"
    quantumUnits = ("instrument", "detector")

    def run(self, seed):
        return Struct(made={"value": seed["value"] + 1})
"""


def trivial_pipeline_yaml(module: str) -> str:
    """The one-task pipeline of `TRIVIAL_TASK` written as ``module``."""
    return f"inputs: [seed]\ntasks:\n  trivial:\n    class: {module}.TrivialTask\n"


def make_trivial_job(
    work: Path,
    module: str,
    n_quanta: int,
    *,
    output_run: str,
    stored_seeds: int | None = None,
    with_json: bool = True,
) -> tuple[Path, Path]:
    """Write the task module, a repository with the seeds, and the graph; return ``(repo, graph)``.

    Parameters
    ----------
    work : `Path`
        An empty directory: ``pkg/`` (the task module), ``repo/`` and ``trivial.qgraph`` go there.
    module : `str`
        The task module's name (``work/pkg/{module}.py``).
    n_quanta : `int`
        Quanta in the graph (detectors 0 .. n-1); quantum ``i`` has id ``i``.
    output_run : `str`
        The graph's output RUN.
    stored_seeds : `int`, optional
        Only the first this many seeds are stored (the other quanta are never run: a
        large graph without a large repository); default all.
    with_json : `bool`
        ``False`` writes the graph as files were written before the header held the
        pipeline's JSON form.
    """
    from supertask.graph import file_format
    from supertask.graph.quantum_graph import QuantumGraph
    from supertask.quantum import Quantum
    from supertask.repo.butler import Butler
    from supertask.repo.dataid import DataId
    from supertask.repo.dataset import Dataset, DatasetType

    (work / "pkg").mkdir()
    (work / "pkg" / f"{module}.py").write_text(textwrap.dedent(TRIVIAL_TASK))
    seed_t = DatasetType("seed", ("instrument", "detector"), "StructuredDataDict")
    made_t = DatasetType("made", ("instrument", "detector"), "StructuredDataDict")
    stored = n_quanta if stored_seeds is None else stored_seeds
    repo = work / "repo"
    Butler.create(repo).close()
    butler = Butler(repo, run="seeds")
    quanta = []
    for d in range(n_quanta):
        data_id = DataId(instrument="Cam", detector=d)
        seed = (
            butler.put({"value": d}, seed_t, data_id) if d < stored else Dataset(seed_t, data_id, run="seeds")
        )
        quanta.append(
            Quantum("trivial", data_id, {"seed": [seed]}, {"made": [Dataset(made_t, data_id)]}, id=d)
        )
    butler.close()
    graph = work / "trivial.qgraph"
    pipeline_yaml = trivial_pipeline_yaml(module)
    metadata = {"output_run": output_run}
    if with_json:
        QuantumGraph(quanta, pipelineYaml=pipeline_yaml, metadata=metadata).save(graph)
    else:
        file_format.write_graph(
            graph, quanta, {"pipelineYaml": pipeline_yaml, "configs": {}, "metadata": metadata}
        )
    return repo, graph
