"""A regular (non-editable) install of supertask and demo_drp runs the demo away from the checkout.

The packages are built as wheels and installed into a new virtual environment outside the
repository, then ``python -m demo_drp.main_job`` runs there from a directory that is not
the checkout: every template, site config, schema, the unit universe and the demo
pipeline must come from the installed packages (``importlib.resources``), not from
paths into the source tree. The third-party dependencies are borrowed from the test
environment through a ``.pth`` line (installing them again would take minutes and test
pip, not us); its own ``.pth`` files, among them the editable install's, are not read
from there, so the checkout stays invisible.

The same check with the dependencies installed too (the whole of ``pip install . ./demo_drp``
into a fresh venv) is ``make install-check``.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

#: what a wheel is not built from (and what may be large or stale in a checkout)
_NOT_SOURCE = (
    ".git",
    ".venv",
    "build",
    "dist",
    "demo_run",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
)
_NOT_SOURCE += (".pool-tests", "tests", "benchmarks")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, (
        f"{args} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    )
    return completed.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a new venv holding wheels of supertask and demo_drp (not editable)."""
    base = tmp_path_factory.mktemp("installed")
    # built from a copy: setuptools builds in the source tree, and its build/ directory would
    # both litter the checkout and carry files deleted since into later wheels
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE), symlinks=True)
    wheels = base / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(source),
            str(source / "demo_drp"),
        ],
        base,
    )
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            *map(str, sorted(wheels.glob("*.whl"))),
        ],
        base,
    )
    purelib = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base).strip()
    )
    borrowed = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (purelib / "zz_borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in borrowed))
    return python


def _clean_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "BPS_SITE_CONFIG_PATH")
    }
    env.pop("SUPERTASK_PEGASUS_SCHEMA_DIR", None)
    return env


def test_installed_packages_come_from_the_new_environment_not_the_checkout(installed, tmp_path):
    code = (
        "import bps, demo_drp, supertask, bps.config, bps.wms.htcondor.templates as t, bps.wms.pegasus.schema as s\n"
        "for m in (supertask, bps, demo_drp):\n"
        "    print(m.__file__)\n"
        "print(bps.config.find_site_file('htcondor_shared'))\n"
        "print(t.template_path('job.sub'))\n"
        "print(s.schema_dir())\n"
    )
    paths = _run([str(installed), "-c", code], tmp_path, _clean_env()).split()
    venv = installed.parent.parent
    assert len(paths) == 6
    assert all(Path(p).is_relative_to(venv) and Path(p).exists() for p in paths), paths


def test_the_demo_runs_from_a_non_editable_install(installed, tmp_path):
    """The demo's steps on a small selection: data, plan, local run, HTCondor and Pegasus workflows.

    ``make demo``'s main job runs the same steps on a whole tile (minutes); ``make
    install-check`` runs that one from a fully installed venv.
    """
    bin_dir, env = installed.parent, _clean_env()
    repo, graph = tmp_path / "repo", tmp_path / "tile0.qgraph"
    _run([str(bin_dir / "supertask"), "demo-data", str(repo), "--exposures", "1"], tmp_path, env)
    pipeline = _run(
        [str(installed), "-c", "import demo_drp.main_job as m; print(m.PIPELINE)"], tmp_path, env
    ).strip()
    assert Path(pipeline).is_relative_to(bin_dir.parent)
    plan = [str(bin_dir / "supertask"), "qgraph", str(repo), "-p", pipeline, "-i", "DemoCam/defaults"]
    plan += ["--where", "tract = 0 AND detector = 0"]
    _run([*plan, "-o", "u/local", "--save", str(graph)], tmp_path, env)
    out = _run(
        [str(bin_dir / "supertask"), "run", str(repo), "--qgraph", str(graph), "-j", "2"], tmp_path, env
    )
    # every task ran its 4 quanta and none failed: the "succeeded" column holds 4, the next three are empty
    for label in ("isr", "calibrate", "makeWarp", "assembleCoadd", "detectCoadd"):
        assert re.search(rf"{label}\s*│\s*4\s*│\s*│\s*│", out), out
    for wms, compute_site, expected in (
        ("htcondor", "htcondor_shared", "*.dag"),
        ("pegasus", "pegasus_local", "**/workflow.yml"),
    ):
        wms_graph = tmp_path / f"{wms}.qgraph"
        _run([*plan, "-o", f"u/{wms}", "--save", str(wms_graph)], tmp_path, env)
        config = tmp_path / f"bps_{wms}.yaml"
        config.write_text(
            f"repo: {repo}\nqgraph: {wms_graph}\noutput_run: u/{wms}\nwms: {wms}\ncompute_site: {compute_site}\n"
            f"submit_dir: {tmp_path / 'submit' / wms}\n"
            + ("site: {condor: {skip_checks: [tmp_node_log]}}\n" if wms == "htcondor" else "")
        )
        _run([str(bin_dir / "bps"), "prepare", str(config)], tmp_path, env)
        assert list((tmp_path / "submit" / wms).glob(expected)), f"bps prepare wrote no {expected} for {wms}"
