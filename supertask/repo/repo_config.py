"""``butler.yaml``: the repository configuration (registry URL, schema version, templates).

Read by every batch job that opens the datastore, so it is written in YAML's JSON form
(JSON is YAML: any YAML tool, or an editor, reads it) after one comment line, and read
with the standard library's JSON parser. A file edited into another YAML style is read
with PyYAML, imported only then: its import alone costs a job more than reading its
quantum.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_NAME = "butler.yaml"
_COMMENT = "# supertask repository configuration (YAML, written in its JSON form)\n"


class RepoConfigError(FileNotFoundError):
    """A repository's ``butler.yaml`` is missing or malformed."""


def read_repo_config(root: str | Path) -> dict[str, Any]:
    """Load ``root/butler.yaml``.

    Raises
    ------
    RepoConfigError
        If the file is missing (not a repository) or not a YAML mapping.
    """
    path = Path(root) / CONFIG_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RepoConfigError(
            f"{root} is not a supertask repository (no {CONFIG_NAME}); create one with `supertask repo create {root}`"
        ) from None
    data = _parse(text)
    if not isinstance(data, dict) or "registry" not in data:
        raise RepoConfigError(f"{path} is not a repository config (needs a 'registry' section)")
    return data


def _parse(text: str) -> Any:
    """The YAML ``text``: by the JSON parser when it is in JSON form (as written here), else by PyYAML."""
    body = "".join(line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#"))
    if body.lstrip().startswith("{"):
        try:
            return json.loads(body)
        except ValueError:
            pass  # YAML flow style that is not JSON: PyYAML decides
    import yaml

    return yaml.safe_load(text)


def write_repo_config(root: str | Path, config: dict[str, Any]) -> Path:
    """Write ``root/butler.yaml`` (atomically), in YAML's JSON form."""
    from ..atomic_write import atomic_write_text

    path = Path(root) / CONFIG_NAME
    atomic_write_text(path, _COMMENT + json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return path
