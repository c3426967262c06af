"""A repository nobody may write (a shared release area) can still be queried and planned against.

The tests run as root, which ignores file permissions; the permission check itself is
therefore tested as the unprivileged ``condoruser`` when that user exists (skipped
otherwise), and the read-only open (``mode=ro`` / ``immutable=1``) directly as root.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest_repo import populate

from supertask.cli.repo_commands import query
from supertask.repo.butler import Butler
from supertask.repo.dataset import DatasetType
from supertask.repo.registry import ReadOnlyError, Registry, RegistryError
from supertask.repo.registry import engine as engine_module

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")


def _digest(root: Path) -> dict[str, str]:
    """Digests of the repository's own files (a WAL reader may leave an empty -wal and a -shm index)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.iterdir())
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory another user can traverse, outside pytest's per-user temporary root.

    pytest keeps its root (``/tmp/pytest-of-<user>``) at mode 0700 and re-applies that
    whenever another pytest session starts, so a test that opens it for ``condoruser``
    would race with any pytest running beside it.
    """
    path = Path(tempfile.mkdtemp(prefix="supertask-readonly-"))
    path.chmod(0o755)
    yield path
    for sub in [path, *path.rglob("*")]:
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def repo(public_tmp) -> Path:
    root = public_tmp / "release" / "repo"
    butler = Butler.create(root)
    populate(butler.registry)
    butler.close()
    butler = Butler(root, run="raw")
    butler.put(__import__("numpy").arange(4), RAW, {"instrument": "Cam", "visit": 1, "detector": 0})
    butler.close()
    return root


def test_a_read_only_butler_queries_and_reads_without_touching_the_repository(repo):
    before = _digest(repo)
    butler = Butler(repo, collections=["raw"], writeable=False)
    assert len(butler.registry.queryDataIds(["visit"], where="visit < 3")) == 3
    dataset = butler.registry.findDataset(RAW, {"instrument": "Cam", "visit": 1, "detector": 0}, ["raw"])
    assert list(butler.get(dataset)) == [0, 1, 2, 3]
    butler.close()
    assert _digest(repo) == before  # the database file is byte-identical


def test_a_write_to_a_read_only_registry_names_the_repository_and_the_fix(repo):
    registry = Registry(f"sqlite:///{repo / 'registry.sqlite3'}", readOnly=True)
    with pytest.raises(ReadOnlyError, match=r"registry\.sqlite3 is read-only .*copy the repository"):
        registry.registerRun("mine")
    with pytest.raises(ValueError, match="read-only Butler cannot write"):
        Butler(repo, run="mine", writeable=False)


def test_read_only_url_is_immutable_where_nobody_may_write_and_no_wal_index_exists(repo, monkeypatch):
    path = str(repo / "registry.sqlite3")
    assert "immutable" not in engine_module.sqlite_read_only_url(path)  # root may write the directory
    monkeypatch.setattr(engine_module.os, "access", lambda p, mode: mode != os.W_OK)
    url = engine_module.sqlite_read_only_url(path)
    assert "mode=ro" in url and "immutable=1" in url
    registry = Registry(f"sqlite:///{path}")  # permissions now say "not writable": opened read-only
    assert engine_module.is_read_only(registry.engine)
    assert len(registry.queryDataIds(["visit"])) == 6
    Path(path + "-wal").write_bytes(b"x" * 10)  # unfinished writes, and no -shm to read them with
    with pytest.raises(RegistryError, match="unfinished writes"):
        Registry(f"sqlite:///{path}")


def _condoruser() -> str:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root (to switch to an unprivileged user) and runuser")
    try:
        pwd.getpwnam("condoruser")
    except KeyError:
        pytest.skip("needs the unprivileged user 'condoruser'")
    return "condoruser"


def _as_user(user: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )


def test_a_repository_the_user_may_not_write_can_be_queried_and_refuses_writes_clearly(repo):
    user = _condoruser()
    for path in [repo, *repo.iterdir()]:  # chmod -R a-w, readable by all
        path.chmod(0o555 if path.is_dir() else 0o444)
    for parent in repo.parents:
        if parent == Path("/") or parent.stat().st_mode & 0o005 == 0o005:
            continue
        parent.chmod(parent.stat().st_mode | 0o005)
    before = _digest(repo)
    read = _as_user(
        user,
        "from supertask.repo.butler import Butler\n"
        f"b = Butler({str(repo)!r}, collections=['raw'])\n"
        "print(len(b.registry.queryDataIds(['visit'], where='visit < 3')))\n"
        "d = b.registry.findDataset('raw', {'instrument': 'Cam', 'visit': 1, 'detector': 0}, ['raw'])\n"
        "print(b.get(d).tolist())\n",
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.split("\n")[:2] == ["3", "[0, 1, 2, 3]"]
    write = _as_user(user, f"from supertask.repo.butler import Butler\nButler({str(repo)!r}, run='mine')\n")
    assert write.returncode != 0
    assert "is read-only" in write.stderr and "attempt to write a readonly database" not in write.stderr
    cli = _as_user(
        user,
        "import sys\nfrom supertask.cli.main import main\n"
        f"sys.argv = ['supertask', 'query', 'data-ids', {str(repo)!r}, 'visit', '--count']\nmain()\n",
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == "6"
    assert _digest(repo) == before


def test_query_command_opens_the_repository_read_only(repo):
    result = CliRunner().invoke(query, ["data-ids", str(repo), "visit", "--where", "visit IN (1..2)"])
    assert result.exit_code == 0, result.output
    assert "2 data IDs" in result.output


def test_qgraph_plans_against_a_repository_the_user_may_not_write(public_tmp):
    user = _condoruser()
    from demo_drp.data import make_demo_repo

    root = public_tmp / "release" / "demo"
    make_demo_repo(root, n_exposures=1)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    for parent in root.parents:
        if parent != Path("/") and parent.stat().st_mode & 0o005 != 0o005:
            parent.chmod(parent.stat().st_mode | 0o005)
    out = public_tmp / "mine"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    before = _digest(root)
    pipeline = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
    argv = ["supertask", "qgraph", str(root), "-p", str(pipeline), "-i", "DemoCam/defaults", "-o", "u/me/x",
            "--save", str(out / "g.qgraph")]  # fmt: skip
    plan = _as_user(user, f"import sys\nfrom supertask.cli.main import main\nsys.argv = {argv!r}\nmain()\n")
    assert plan.returncode == 0, plan.stderr
    assert (out / "g.qgraph").stat().st_size > 0
    assert _digest(root) == before
