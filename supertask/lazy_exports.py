"""Re-exporting a package's names lazily (PEP 562), so that importing the package stays cheap.

``import supertask`` runs in every batch job, and ``supertask.expr`` must not load lark
or SQLAlchemy until an expression is parsed: such a package lists its public names and
the module defining each, and gets its module-level ``__getattr__`` and ``__dir__`` here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, which re-exports ``exports`` lazily.

    Parameters
    ----------
    package : `str`
        The package's ``__name__`` (its module must be in `sys.modules`: call this from
        the package's ``__init__``).
    exports : mapping of `str` to `str`
        Public name -> the module defining it, absolute or relative to ``package``
        (``".parser"``). A name is imported on first use and then kept in the package's
        namespace, so later uses cost a dictionary look-up.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
