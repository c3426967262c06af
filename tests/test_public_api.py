"""The public API: every documented name imports from the package top level, lazily."""

import subprocess
import sys

import supertask


def test_all_lists_exactly_the_lazy_exports():
    assert sorted(supertask.__all__) == sorted(supertask._EXPORTS)


def test_every_public_name_resolves():
    for name in supertask.__all__:
        assert getattr(supertask, name) is not None, name


def test_importing_the_package_loads_no_heavy_dependency():
    code = (
        "import sys, supertask; "
        "heavy = [m for m in ('sqlalchemy', 'numpy', 'pydantic', 'rich', 'lark', 'yaml') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
