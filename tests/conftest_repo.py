"""Fixtures for the repository tests: a registry URL per backend, and a small populated repository.

Import the fixtures into a test module with ``from conftest_repo import *``-style explicit
imports (or wire this module into ``tests/conftest.py`` with ``pytest_plugins``).

PostgreSQL: the URL comes from ``SUPERTASK_TEST_POSTGRES_URL``; each test gets a fresh
schema (selected through the connection's ``search_path``) that is dropped afterwards.
Without the variable the PostgreSQL cases are skipped, unless ``SUPERTASK_REQUIRE_POSTGRES=1``,
which makes them fail instead (CI must not silently skip a backend).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_base_url() -> str | None:
    """The server URL, or skip/fail the test as configured."""
    url = os.environ.get("SUPERTASK_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("SUPERTASK_REQUIRE_POSTGRES") == "1":
            pytest.fail("SUPERTASK_REQUIRE_POSTGRES=1 but SUPERTASK_TEST_POSTGRES_URL is not set")
        pytest.skip('PostgreSQL tests need SUPERTASK_TEST_POSTGRES_URL (eval "$(.ci/start-postgres)")')
    return url


@contextmanager
def _fresh_postgres_schema() -> Iterator[str]:
    import sqlalchemy as sa

    base = postgres_base_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema, dropped after the test."""
    with _fresh_postgres_schema() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """A registry URL on each backend: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request, tmp_path_factory) -> Iterator[str]:
    """Like ``db_url`` but shared by a module's read-only tests (one schema per module)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.sqlite3'}"
        return
    with _fresh_postgres_schema() as url:
        yield url


def populate(registry, n_visits: int = 6, n_detectors: int = 4, n_patches: int = 4) -> None:
    """Insert a tiny camera and sky map.

    Visits alternate filters (odd visits ``R``/band ``r``, even ``G``/``g``); visit ``v``'s
    detectors cover RA ``[v, v + 0.5]`` (Dec ``[0, 1]``); patch ``p`` covers RA ``[2p, 2p + 2]``,
    so visit ``v`` overlaps patch ``v // 2`` only (boxes touching at an edge count as overlapping).
    """
    registry.insertUnits("instrument", [{"instrument": "Cam", "detector_max": n_detectors}])
    registry.insertUnits("band", [{"band": "r"}, {"band": "g"}])
    registry.insertUnits(
        "physical_filter",
        [
            {"instrument": "Cam", "physical_filter": "R", "band": "r"},
            {"instrument": "Cam", "physical_filter": "G", "band": "g"},
        ],
    )
    registry.insertUnits(
        "detector", [{"instrument": "Cam", "detector": d, "full_name": f"D{d}"} for d in range(n_detectors)]
    )
    registry.insertUnits(
        "visit",
        [
            {
                "instrument": "Cam",
                "visit": v,
                "physical_filter": "R" if v % 2 else "G",
                "exposure_time": 10.0 * v,
            }
            for v in range(n_visits)
        ],
    )
    registry.insertUnits(
        "visit_detector_region",
        [
            {
                "instrument": "Cam",
                "visit": v,
                "detector": d,
                "ra_min": v + 0.1 * d,
                "ra_max": v + 0.1 * d + 0.05,
                "dec_min": 0.0,
                "dec_max": 1.0,
            }
            for v in range(n_visits)
            for d in range(n_detectors)
        ],
    )
    registry.insertUnits("skymap", [{"skymap": "sky"}])
    registry.insertUnits("tract", [{"skymap": "sky", "tract": 0}])
    registry.insertUnits(
        "patch",
        [
            {
                "skymap": "sky",
                "tract": 0,
                "patch": p,
                "ra_min": 2.0 * p + 0.001,
                "ra_max": 2.0 * p + 1.999,
                "dec_min": 0.0,
                "dec_max": 1.0,
            }
            for p in range(n_patches)
        ],
    )
