"""``supertask repo`` (create, info) and ``supertask query`` (data-ids, datasets).

Thin wrappers over `Butler` and `Registry`; errors from bad input (an invalid expression,
an unknown unit or collection) are printed as one message, not a traceback.
"""

from __future__ import annotations

from typing import NoReturn

import click

from .request_options import guarded, parse_bind, split_collections

MAX_ROWS_DEFAULT = 200


def _input_errors() -> tuple[type[BaseException], ...]:
    from ..repo.registry import RegistryError
    from ..repo.repo_config import RepoConfigError

    return (ValueError, KeyError, LookupError, RegistryError, RepoConfigError, FileExistsError)


def _as_click_error(err: BaseException) -> NoReturn:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    raise click.ClickException(str(message)) from None


#: Turn the library's input errors into click errors (exit code 1, message only).
_friendly = guarded(_input_errors, _as_click_error)


def _console():
    from rich.console import Console

    return Console(soft_wrap=True)


@click.group()
def repo() -> None:
    """Create and inspect data repositories."""


@repo.command("create")
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--db-url", default=None, help="Registry database URL (default: SQLite file inside ROOT).")
@_friendly
def create(root: str, db_url: str | None) -> None:
    """Create a repository in ROOT."""
    from ..repo.butler import Butler

    butler = Butler.create(root, db_url=db_url)
    click.echo(f"created repository {root} (registry: {db_url or 'SQLite ' + butler.dbUrl})")


@repo.command("info")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@_friendly
def info(root: str) -> None:
    """Show the dataset types and unit counts of a repository."""
    from rich.table import Table

    from ..repo.butler import Butler

    butler = Butler(root, writeable=False)
    reg = butler.registry
    units = Table(title="units")
    units.add_column("unit or relation")
    units.add_column("rows", justify="right")
    for name in reg.schema.elements:
        units.add_row(name, str(reg.countUnitRows(name)))
    types = Table(title="dataset types")
    for col in ("name", "units", "storage class", "datasets"):
        types.add_column(col)
    for dt in reg.queryDatasetTypes():
        types.add_row(dt.name, ", ".join(dt.units), dt.storageClass, str(reg.countDatasets(dt)))
    console = _console()
    console.print(units)
    console.print(types)


@click.group()
def query() -> None:
    """Query data IDs and datasets in a repository."""


@query.command("data-ids")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("units", nargs=-1, required=True)
@click.option("--where", default=None, help="Data-ID expression, e.g. \"visit IN (1..10) AND band = 'r'\".")
@click.option("--bind", multiple=True, help="NAME=VALUE for :NAME in the expression (repeatable).")
@click.option("--datasets", multiple=True, help="Keep data IDs with a dataset of this type (repeatable).")
@click.option("--collections", multiple=True, help="Collections searched for --datasets, in order.")
@click.option("--count", "count_only", is_flag=True, help="Only print how many data IDs match.")
@click.option("--limit", default=MAX_ROWS_DEFAULT, show_default=True, help="Rows to print (0 = all).")
@_friendly
def data_ids(
    root: str,
    units: tuple[str, ...],
    where: str | None,
    bind: tuple[str, ...],
    datasets: tuple[str, ...],
    collections: tuple[str, ...],
    count_only: bool,
    limit: int,
) -> None:
    """Print the data IDs over UNITS that match the expression."""
    from rich.table import Table

    from ..repo.butler import Butler

    reg = Butler(root, writeable=False).registry
    if datasets and not collections:
        raise click.UsageError("--datasets needs --collections to search")
    extra = {"datasets": list(datasets), "collections": split_collections(collections) or None}
    if count_only:
        click.echo(reg.countDataIds(list(units), where, parse_bind(bind), **extra))
        return
    rows = reg.queryDataIds(list(units), where, parse_bind(bind), **extra)
    keys = reg.universe.expand(units)
    table = Table(title=f"{len(rows)} data IDs")
    for key in keys:
        table.add_column(key)
    for row in rows[: limit or None]:
        table.add_row(*[str(row[k]) for k in keys])
    _console().print(table)
    if limit and len(rows) > limit:
        click.echo(f"... {len(rows) - limit} more (use --limit 0 for all)")


@query.command("datasets")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("dataset_type")
@click.option("--collections", multiple=True, required=True, help="Collections to search, in order.")
@click.option("--where", default=None, help="Data-ID expression.")
@click.option("--bind", multiple=True, help="NAME=VALUE for :NAME in the expression (repeatable).")
@click.option("--limit", default=MAX_ROWS_DEFAULT, show_default=True, help="Rows to print (0 = all).")
@_friendly
def datasets(
    root: str,
    dataset_type: str,
    collections: tuple[str, ...],
    where: str | None,
    bind: tuple[str, ...],
    limit: int,
) -> None:
    """Print the datasets of DATASET_TYPE found in the collections."""
    from rich.table import Table

    from ..repo.butler import Butler

    reg = Butler(root, writeable=False).registry
    found = reg.queryDatasets(dataset_type, split_collections(collections), where, parse_bind(bind))
    keys = reg.universe.expand(reg.getDatasetType(dataset_type).units)
    table = Table(title=f"{len(found)} {dataset_type} datasets")
    for col in (*keys, "run", "id"):
        table.add_column(col)
    for ds in found[: limit or None]:
        table.add_row(*[str(ds.dataId[k]) for k in keys], ds.run or "", str(ds.id))
    _console().print(table)
    if limit and len(found) > limit:
        click.echo(f"... {len(found) - limit} more (use --limit 0 for all)")
