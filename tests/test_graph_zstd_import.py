"""`supertask.graph.zstd_import`: the graph file's zstandard is the package's own C backend, loaded without `platform`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from supertask.graph.zstd_import import import_zstandard
before = {before!r}
if before:
    import zstandard
z = import_zstandard()
loaded = dict(name=z.__name__, platform="platform" in sys.modules, package="zstandard" in sys.modules)
import zstandard  # what any other code of the process gets afterwards
data = b"quantum record " * 200
trained = zstandard.train_dictionary(1024, [data[i:] + bytes([i]) for i in range(200)])
packed = zstandard.ZstdCompressor(dict_data=trained).compress(data)
unpacked = z.ZstdDecompressor(dict_data=z.ZstdCompressionDict(trained.as_bytes())).decompress(packed)
try:
    z.ZstdDecompressor().decompress(b"not zstd at all")
    caught = False
except zstandard.ZstdError:
    caught = True
loaded.update(same=unpacked == data, caught=caught, backend=zstandard.backend)
print(json.dumps(loaded))
"""


def _probe(*, before: bool = False, policy: str | None = None) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("PYTHON_ZSTANDARD_IMPORT_POLICY", None)
    if policy is not None:
        env["PYTHON_ZSTANDARD_IMPORT_POLICY"] = policy
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="the C backend is CPython's")
def test_on_cpython_the_c_backend_is_loaded_without_the_package_or_platform_and_shared_with_it():
    result = _probe()
    assert result == {
        "name": "zstandard.backend_c",
        "platform": False,
        "package": False,
        "same": True,  # reads what the package writes, with a trained dictionary
        "caught": True,  # its errors are the package's ZstdError
        "backend": "cext",
    }


def test_an_import_policy_other_than_the_default_is_left_to_the_package():
    result = _probe(policy="cffi_fallback")
    assert result["name"] == "zstandard" and result["same"] and result["caught"]


def test_an_already_imported_package_is_used_as_it_is():
    result = _probe(before=True)
    assert result["name"] == "zstandard" and result["same"] and result["caught"]
