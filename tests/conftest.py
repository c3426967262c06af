"""Settings shared by the whole test suite.

Property tests (hypothesis) check what a function returns, never how fast: hypothesis's
default 200 ms deadline per example is a timed assertion, and on a loaded 2-core CI
machine it failed `test_registry_keys.py` once with nothing wrong. Speed is measured by
the benchmarks in ``benchmarks/``.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("supertask", deadline=None)
settings.load_profile("supertask")
