"""The ``zstandard`` compression library for the graph file, without the cost of its package's import.

``import zstandard`` imports `platform` only to ask which Python runs it (CPython gets the
C backend, ``zstandard.backend_c``), and `platform` compiles a dozen regular expressions
at import: a few milliseconds of every batch job, which reads its quanta from a graph
file. On CPython, `import_zstandard` loads that C backend directly, the very module the
package would load (registered under its own name, so a later ``import zstandard`` uses
it as well); everything the graph file uses (compressor, decompressor, dictionaries,
`ZstdError`) is defined there. Anywhere else, under an import policy other than the
default (``PYTHON_ZSTANDARD_IMPORT_POLICY``), when the package is already imported, or
if anything about the C backend is not as expected, it is the package itself.

The backend lacks what the package's ``__init__`` adds: ``zstandard.open``,
``zstandard.compress`` and ``zstandard.decompress`` (use a `ZstdCompressor` or
`ZstdDecompressor`), ``__version__`` and ``backend``. Code using the returned module sticks
to `NEEDED` and the classes' methods.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

#: what the graph file uses; a C backend without any of these is not used
NEEDED = ("ZstdCompressor", "ZstdDecompressor", "ZstdCompressionDict", "ZstdError", "train_dictionary")


def import_zstandard() -> ModuleType:
    """The C backend of ``zstandard`` where it can stand for the package, else the package."""
    package = sys.modules.get("zstandard")
    if package is None and _c_backend_is_the_choice():
        try:
            backend = sys.modules.get("zstandard.backend_c") or _load_c_backend()
        except Exception:  # any surprise: the package decides, as it always did
            backend = None
        if backend is not None and all(hasattr(backend, name) for name in NEEDED):
            return backend
    import zstandard

    return zstandard


def _c_backend_is_the_choice() -> bool:
    """True where ``import zstandard`` itself would take the C backend without trying another."""
    policy = os.environ.get("PYTHON_ZSTANDARD_IMPORT_POLICY", "default").strip()
    return sys.implementation.name == "cpython" and policy in ("default", "cext")


def _load_c_backend() -> ModuleType | None:
    """``zstandard.backend_c`` loaded from the package's directory, without running the package's ``__init__``."""
    import importlib.util
    from importlib.machinery import EXTENSION_SUFFIXES

    spec = importlib.util.find_spec("zstandard")
    for directory in (spec.submodule_search_locations or []) if spec is not None else []:
        for suffix in EXTENSION_SUFFIXES:
            path = os.path.join(directory, "backend_c" + suffix)
            if not os.path.isfile(path):
                continue
            backend_spec = importlib.util.spec_from_file_location("zstandard.backend_c", path)
            if backend_spec is None or backend_spec.loader is None:
                return None
            module = importlib.util.module_from_spec(backend_spec)
            backend_spec.loader.exec_module(module)
            sys.modules["zstandard.backend_c"] = module
            return module
    return None
