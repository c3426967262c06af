"""``supertask demo-data REPO --exposures N [--seed S]``: make a repository of simulated DemoCam data."""

from __future__ import annotations

import sys
import time

import click


@click.command("demo-data")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option(
    "--exposures",
    "-n",
    type=click.IntRange(min=1, max=10000),
    default=6,
    show_default=True,
    help="Number of exposures (one visit each), cycling through bands g, r, i.",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Seed of the simulation (stars, pointings, noise)."
)
@click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="Registry database for a new repository (e.g. postgresql+psycopg://host/db); default: SQLite in REPO.",
)
@click.option(
    "--raw-files",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Write the raws as files into DIR (with sidecars; unit records in raw-units.yaml beside DIR) "
    "instead of into the repository, for supertask register-units, ingest and define-visits.",
)
def demo_data(repo: str, exposures: int, seed: int, db_url: str | None, raw_files: str | None) -> None:
    """Create REPO if needed and fill it with DemoCam raws, calibrations, a reference catalogue and a skymap.

    Then plan the demo pipeline over sky tile 0 with:

        supertask qgraph REPO -p examples/demo_pipeline.yaml -i DemoCam/defaults -o u/$USER/tile0 --where "tract = 0"
    """
    from demo_drp.data import DEFAULTS, make_demo_repo

    start = time.perf_counter()
    try:
        butler = make_demo_repo(
            repo, n_exposures=exposures, db_url=db_url, seed=seed, progress=click.echo, raw_files=raw_files
        )
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        click.secho(f"error: {err}", fg="red", err=True)
        sys.exit(1)
    butler.close()
    click.echo(f"done in {time.perf_counter() - start:.1f} s; use --input {DEFAULTS}")
