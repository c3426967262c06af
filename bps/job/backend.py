"""The supertask services a batch job uses, behind a small interface that tests replace.

`SupertaskBackend` imports each supertask module only when the job needs it (start-up
is paid by every job); `Backend` and `Store` say what a stand-in must provide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Store(Protocol):
    """The datastore operations a job needs (`supertask.repo.datastore.Datastore` has them).

    ``path`` names a dataset's file relative to ``root``; ``read`` reads a file by a
    path relative to ``root`` or absolute; ``write`` (the scratch store only) writes an
    output and returns ``(relative path, size, checksum)``.
    """

    root: Any

    def path(self, datasetType: Any, dataId: Any, run: str) -> str: ...

    def read(self, path: str, storageClass: str) -> Any: ...

    def write(
        self, obj: Any, datasetType: Any, dataId: Any, run: str, *, fsync: bool = True
    ) -> tuple[str, int, str]: ...


class Backend(Protocol):
    """The supertask services a job uses; tests substitute small stand-ins."""

    def load(self, graph: str, ids: list[int]) -> tuple[dict[str, Any], list[Any]]: ...

    def make_tasks(self, header: dict[str, Any], labels: set[str]) -> dict[str, Any]: ...

    def open_store(self, repo: str) -> Store: ...

    def open_scratch_store(self, scratch: Path) -> Store: ...

    def registered(self, repo: str, datasetType: Any, dataId: Any, run: str) -> str | None: ...


class SupertaskBackend:
    """The real services: graph file reader, pipeline, datastore (each imported when first used)."""

    def load(self, graph: str, ids: list[int]) -> tuple[dict[str, Any], list[Any]]:
        """The graph's header and the quanta ``ids`` (checksums verified by the reader)."""
        from supertask.graph.quantum_graph import QuantumGraph

        header = QuantumGraph.readHeader(graph)
        return header, QuantumGraph.loadQuanta(graph, ids)

    def make_tasks(self, header: dict[str, Any], labels: set[str]) -> dict[str, Any]:
        """The tasks labelled ``labels``, built from the pipeline in the graph's header.

        From its JSON form when the header has one (graphs saved since format 1.1): a job
        then needs no YAML parser.
        """
        from supertask.pipeline import Pipeline

        if header.get("pipelineJson"):
            from supertask.pipeline.yaml_io import load_pipeline_json

            pipeline = load_pipeline_json(header["pipelineJson"], pipeline_class=Pipeline)
        else:
            pipeline = Pipeline.fromYaml(header["pipelineYaml"])
        # The schemas the graph was planned with (header metadata): a job never opens the registry.
        record = (header.get("metadata") or {}).get("schemas")
        schemas = None
        if record:
            from supertask.execution.schema_outputs import graph_schemas

            schemas, _ = graph_schemas(header["metadata"])
        tasks = pipeline.makeTasks(butler=None, schemas=schemas)
        return {task.label: task for task in tasks if task.label in labels}

    def open_store(self, repo: str) -> Store:
        """The repository's datastore (reads only its ``butler.yaml``; no registry)."""
        from supertask.repo.datastore import Datastore

        return Datastore.fromRepo(repo)

    def open_scratch_store(self, scratch: Path) -> Store:
        """A datastore over scratch, where the job's quanta write their outputs."""
        from supertask.repo.datastore import Datastore

        return Datastore(scratch)

    def registered(self, repo: str, datasetType: Any, dataId: Any, run: str) -> str | None:
        """The registered checksum of one dataset (``"?"`` if none was recorded), or None if unregistered.

        Read-only, and only on the rare path where an output's datastore path already
        holds other bytes (`bps.publish`): a normal job never opens the registry.
        """
        from supertask.repo.butler import Butler
        from supertask.repo.dataset import Dataset

        butler = Butler(repo, writeable=False)  # jobs never write the registry
        try:
            _, _, checksum = butler.registry.getDatasetLocation(Dataset(datasetType, dataId, run=run))
        except LookupError:  # not registered, or its dataset type is not
            return None
        finally:
            butler.close()
        return checksum or "?"
