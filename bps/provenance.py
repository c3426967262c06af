"""Provenance of batch runs: what the final job records in the registry for the output RUN.

``supertask run`` records with its RUN the pipeline, the task configs, the software
versions, the command, the data-ID expression and the input collections. A batch run's
jobs never touch the registry, so the final job (``bps finalize``) records the same, read
from the graph file's header, plus what only the batch run has: the ``bps`` command, the
resolved submit configuration with the layer each value came from, and the environment
variables its files name as ``${VAR}`` with the values used (no other variable is read). Prepare writes
that part to ``provenance.json`` in the submit directory (the final job may run on
another host, and a restart must record the same thing), with passwords in URLs and
secret-looking options masked; the submitter's environment is never read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .staging import atomic_write_text

if TYPE_CHECKING:
    from .config import ResolvedConfig

PROVENANCE_FILE = "provenance.json"


def _masked(value: Any) -> Any:
    """``value`` with ``scheme://user:password@host`` passwords masked in every string."""
    from supertask.graph.provenance import redact_command_line

    if isinstance(value, str):
        return redact_command_line([value]).strip("'") if "://" in value else value
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def write_submit_provenance(
    submit_dir: Path, resolved: ResolvedConfig, argv: list[str] | None = None
) -> Path:
    """Write ``provenance.json``: the ``bps`` command (``sys.argv`` by default) and the submit config."""
    from supertask.graph.provenance import redact_command_line

    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    data = {
        "bps_command_line": redact_command_line(argv),
        "submit_config": _masked(resolved.config.model_dump(mode="json")),
        "submit_config_sources": dict(resolved.sources),
        # only the environment variables the files name (``${VAR}``), with the values used
        "variables": {
            name: {"value": value, "named_in": files} for name, (value, files) in resolved.variables.items()
        },
    }
    path = Path(submit_dir) / PROVENANCE_FILE
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


def run_provenance(submit_dir: Path, graph_file: str | Path) -> dict[str, Any]:
    """What the final job records with the output RUN (the keys ``supertask run`` records, and more).

    Raises
    ------
    FileNotFoundError
        If the graph file is gone (it holds the pipeline and configs).
    """
    from supertask.graph.file_format import read_header

    header = read_header(graph_file)
    metadata = header.get("metadata") or {}
    submit_file = Path(submit_dir) / PROVENANCE_FILE
    submit = json.loads(submit_file.read_text()) if submit_file.exists() else {}
    graph_command = metadata.get("command_line") or (header.get("provenance") or {}).get("commandLine", "")
    return {
        "pipeline": header.get("pipelineYaml"),
        "configs": header.get("configs"),
        "versions": metadata.get("versions", {}),
        "command_line": submit.get("bps_command_line") or graph_command,
        "graph_command_line": graph_command,
        "where": metadata.get("where", ""),
        "input_collections": metadata.get("input_collections", []),
        "submit_config": submit.get("submit_config"),
        "submit_config_sources": submit.get("submit_config_sources"),
        "submit_variables": submit.get("variables", {}),
    }
