"""Submit descriptions and the DAGMan config, rendered from ``condor_templates/`` of this package.

Templates are plain submit-language text with ``@name`` placeholders (``@`` because
``$`` belongs to HTCondor's own macros). A site replaces any of them by putting a file
of the same name in its ``condor.templates_dir``; a missing placeholder value is an
error naming the template, so a site template cannot silently lose a setting.
"""

from __future__ import annotations

import string
from functools import lru_cache
from importlib import resources
from pathlib import Path

#: Templates shipped inside this package (package data, found the same way in a source
#: checkout, an editable install and a wheel: packages are installed as directories).
DEFAULT_DIR = Path(str(resources.files("bps.wms.htcondor").joinpath("condor_templates")))
NAMES = ("job.sub", "final.sub", "dagman.config")


class _CondorTemplate(string.Template):
    delimiter = "@"


@lru_cache(maxsize=32)
def _load(path: Path) -> _CondorTemplate:
    return _CondorTemplate(path.read_text())


def template_path(name: str, site_dir: str | None = None) -> Path:
    """The site's version of template ``name`` if it has one, else the shipped one."""
    if name not in NAMES:
        raise ValueError(f"unknown template {name!r}; expected one of {NAMES}")
    if site_dir:
        candidate = Path(site_dir).expanduser() / name
        if candidate.is_file():
            return candidate
        if not Path(site_dir).expanduser().is_dir():
            raise FileNotFoundError(
                f"condor.templates_dir {site_dir!r} of the site config does not exist: "
                "fix the path or remove the setting to use the shipped templates"
            )
    path = DEFAULT_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped template {path} is missing: reinstall supertask (pip install --force-reinstall supertask)"
        )
    return path


def render(name: str, values: dict[str, object], site_dir: str | None = None) -> str:
    """Render template ``name`` with ``values``; unknown placeholders raise a clear error."""
    path = template_path(name, site_dir)
    try:
        text = _load(path).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise ValueError(
            f"template {path} uses @{exc.args[0]}, which bps does not provide; available: {sorted(values)}"
        ) from None
    except ValueError as exc:
        raise ValueError(f"template {path} is malformed ({exc}); write a literal @ as @@") from None
    # Drop lines left empty by optional blocks so rendered files stay readable.
    return "\n".join(line for line in text.splitlines() if line.strip() != "") + "\n"
