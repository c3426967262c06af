"""What a graph file records about how it was made: command line and package versions.

Why so little
-------------
Provenance that dumps the submitter's whole environment leaks secrets into shared
directories, where every collaborator can read them. The file therefore records an explicit, short list:
the command line (with passwords in URLs and ``--password``-like options masked),
the versions of the packages that shape a graph, the Python version, the host name
and the time. Environment variables are never read.
"""

from __future__ import annotations

import platform
import re
import shlex
import socket
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

__all__ = ("PACKAGES", "collect_provenance", "redact_command_line")

PACKAGES = ("supertask", "zstandard", "pydantic", "sqlalchemy", "numpy", "pyyaml", "lark", "click")
"""The distributions whose versions a graph file records."""

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?P<at>@)")
_SECRET_WORDS = r"(?:password|passwd|secret|token|api[-_]?key|credential)"
_SECRET_OPTION = re.compile(rf"^(?P<opt>--?[\w-]*{_SECRET_WORDS}[\w-]*)=.*$", re.I)
_SECRET_FLAG = re.compile(rf"--?[\w-]*{_SECRET_WORDS}[\w-]*", re.I)
_MASK = "***"


def redact_command_line(argv: list[str]) -> str:
    """Join ``argv`` as a shell command line with secrets masked.

    Masks the password of ``scheme://user:password@host`` URLs anywhere in an
    argument, ``--password=value``-like options (password, secret, token, API key,
    credential), and the value following such an option given bare.
    """
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(_MASK)
            mask_next = False
            continue
        arg = _URL_PASSWORD.sub(rf"\g<head>{_MASK}\g<at>", arg)
        match = _SECRET_OPTION.match(arg)
        if match:
            arg = f"{match['opt']}={_MASK}"
        elif _SECRET_FLAG.fullmatch(arg):
            mask_next = True
        out.append(arg)
    return shlex.join(out)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def collect_provenance(commandLine: list[str] | None = None) -> dict[str, Any]:
    """The provenance block of a graph header.

    Parameters
    ----------
    commandLine : `list` [`str`], optional
        The command that made the graph; defaults to ``sys.argv``.
    """
    argv = list(sys.argv if commandLine is None else commandLine)
    return {
        "commandLine": redact_command_line(argv),
        "packages": {name: v for name in PACKAGES if (v := _version(name)) is not None},
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
