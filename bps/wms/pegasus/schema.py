"""Validate written Pegasus files against Pegasus's published JSON schemas.

Pegasus publishes its YAML formats as JSON Schema (draft 7) documents that refer
to each other by relative file name (``wf-5.0.yml`` uses ``common.yml#/$defs/...``,
``sc-5.0.yml``...). This module loads a directory of them into a `referencing`
registry under one base URI so those references resolve, and validates a written
workflow or catalog. ``jsonschema`` is an optional dependency (the ``validate``
extra: ``pip install 'supertask[validate]'``), imported only when a validator is built.

The schemas ship with this package (``schemas/``, Pegasus 5.0 formats, with Pegasus's
licence and the commit they come from); ``$SUPERTASK_PEGASUS_SCHEMA_DIR`` names
another directory of them instead (e.g. a newer Pegasus release's).
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from jsonschema import Draft7Validator
    from referencing import Registry

_BASE = "https://pegasus.isi.edu/schema/"
#: The schemas shipped with this package.
SHIPPED_DIR = Path(str(files("bps.wms.pegasus").joinpath("schemas")))

#: Which schema each written file follows.
SCHEMA_OF: dict[str, str] = {
    "workflow.yml": "wf-5.0.yml",
    "compute.yml": "wf-5.0.yml",
    "replicas.yml": "rc-5.0.yml",
    "transformations.yml": "tc-5.0.yml",
    "sites.yml": "sc-5.0.yml",
}


def schema_dir() -> Path:
    """The directory holding Pegasus's schema files.

    Raises
    ------
    FileNotFoundError
        Naming every place looked at, and how to point to the schemas.
    """
    candidates = []
    if os.environ.get("SUPERTASK_PEGASUS_SCHEMA_DIR"):
        candidates.append(Path(os.environ["SUPERTASK_PEGASUS_SCHEMA_DIR"]))
    candidates.append(SHIPPED_DIR)
    for candidate in candidates:
        if (candidate / "wf-5.0.yml").is_file():
            return candidate
    raise FileNotFoundError(
        "Pegasus JSON schemas not found in "
        + ", ".join(str(c) for c in candidates)
        + "; set SUPERTASK_PEGASUS_SCHEMA_DIR to a directory holding wf-5.0.yml and its siblings"
    )


@cache
def _registry(directory: str) -> Registry[Any]:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    resources = []
    for path in sorted(Path(directory).glob("*.yml")):
        contents = yaml.safe_load(path.read_text())
        resources.append((_BASE + path.name, Resource.from_contents(contents, default_specification=DRAFT7)))
    return Registry().with_resources(resources)


def validator(schema_name: str, directory: Path | None = None) -> Draft7Validator:
    """A draft-7 validator for one schema file (``wf-5.0.yml``, ``rc-5.0.yml``, ...)."""
    try:
        from jsonschema import Draft7Validator
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "validating Pegasus files needs jsonschema: pip install 'supertask[validate]'"
        ) from None

    registry = _registry(str(directory or schema_dir()))
    return Draft7Validator({"$ref": _BASE + schema_name}, registry=registry)


def validation_errors(document: dict[str, Any], schema_name: str, directory: Path | None = None) -> list[str]:
    """Every schema violation of ``document``, as ``path: message`` strings (empty when valid)."""
    errors = sorted(validator(schema_name, directory).iter_errors(document), key=lambda e: list(e.path))
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}" for error in errors
    ]


def validate_directory(pegasus_dir: Path, directory: Path | None = None) -> dict[str, list[str]]:
    """Validate every written Pegasus file of ``pegasus_dir``: file name -> its errors."""
    results = {}
    for file_name, schema_name in SCHEMA_OF.items():
        path = Path(pegasus_dir) / file_name
        if path.exists():
            results[file_name] = validation_errors(json.loads(path.read_text()), schema_name, directory)
    return results
