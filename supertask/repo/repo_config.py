"""``butler.yaml``: the repository configuration (registry URL, schema version, templates).

Read by batch jobs that only need the datastore, so it imports only PyYAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONFIG_NAME = "butler.yaml"


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
    if not path.exists():
        raise RepoConfigError(
            f"{root} is not a supertask repository (no {CONFIG_NAME}); create one with `supertask repo create {root}`"
        )
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "registry" not in data:
        raise RepoConfigError(f"{path} is not a repository config (needs a 'registry' section)")
    return data


def write_repo_config(root: str | Path, config: dict[str, Any]) -> Path:
    """Write ``root/butler.yaml`` (atomically)."""
    from ..atomic_write import atomic_write_text

    path = Path(root) / CONFIG_NAME
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path
