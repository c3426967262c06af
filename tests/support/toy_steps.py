"""A toy repository with units (instrument Cam, detectors 1-3) and a seed each, and a stepped toy pipeline.

For tests that plan (``supertask qgraph``, ``bps`` without a saved graph) with the toy tasks
of `support.toy_pipeline`: planning needs the unit rows that those tests' hand-made graphs skip.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import yaml

from supertask.repo.butler import Butler

from .toy_pipeline import SEED, SEEDS_RUN, TASK_MODULE

DETECTORS = (1, 2, 3)


def toy_pipeline_yaml() -> str:
    return yaml.safe_dump(
        {
            "inputs": ["seed"],
            "tasks": {"make": f"{TASK_MODULE}.MakeTask", "total": f"{TASK_MODULE}.TotalTask"},
            "subsets": {"perDetector": ["make"], "gather": ["total"]},
            "steps": [
                {"subset": "perDetector", "units": ["detector"]},
                {"subset": "gather", "units": ["instrument"]},
            ],
        },
        sort_keys=False,
    )


def make_toy_repo(tmp_path: Path, db_url: str) -> tuple[Path, Path]:
    """A repository (on ``db_url``'s backend) with instrument Cam, its detectors and a seed each; the pipeline file."""
    repo = tmp_path / "repo"
    with warnings.catch_warnings():  # the test server's URL carries its password
        warnings.simplefilter("ignore")
        Butler.create(repo, db_url=None if db_url.startswith("sqlite") else db_url).close()
    butler = Butler(repo, run=SEEDS_RUN)
    butler.registry.insertUnits("instrument", [{"instrument": "Cam"}])
    butler.registry.insertUnits("detector", [{"instrument": "Cam", "detector": d} for d in DETECTORS])
    for d in DETECTORS:
        butler.put({"detector": d, "value": d * 10}, SEED, {"instrument": "Cam", "detector": d})
    butler.close()
    pipeline = tmp_path / "toy.yaml"
    pipeline.write_text(toy_pipeline_yaml())
    return repo, pipeline
