"""The ``supertask`` command: a click group whose subcommands are imported on use.

Subcommands live in small modules owned by different parts of the package; `LazyGroup`
maps each command name to ``"module:attribute"`` and imports it only when that command
runs, so ``supertask --help`` and every batch job stay fast, and a module that is
missing gives a one-line "not available" error instead of a traceback.

To add a command, add a line to `LAZY_COMMANDS` (or call ``main.add_lazy_command``).
Another installed package adds one through the ``supertask.commands`` entry-point group
(``name = "module:attribute"``), read only when a name is not one of ours or when the
commands are listed: the demo's ``supertask demo-data`` comes from ``demo_drp`` this way.
"""

from __future__ import annotations

import importlib
import logging

import click

__all__ = ["main", "LazyGroup", "LAZY_COMMANDS", "PLUGIN_GROUP"]

#: Entry-point group through which other installed packages add subcommands.
PLUGIN_GROUP = "supertask.commands"

LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:attribute", short help shown by --help without importing the module)
    "pipeline": ("supertask.cli.pipeline_commands:pipeline", "Inspect pipeline files."),
    "repo": ("supertask.cli.repo_commands:repo", "Create and manage data repositories."),
    "query": ("supertask.cli.repo_commands:query", "Query data IDs and datasets in a repository."),
    "register-units": (
        "supertask.cli.ingest_commands:register_units",
        "Register instrument, detectors, exposures, visits... from YAML/CSV.",
    ),
    "ingest": ("supertask.cli.ingest_commands:ingest", "Ingest raw files into a repository."),
    "define-visits": (
        "supertask.cli.ingest_commands:define_visits",
        "Group ingested exposures into visits, with their sky regions.",
    ),
    "qgraph": ("supertask.cli.qgraph_commands:qgraph", "Build and inspect quantum graphs."),
    "run": ("supertask.cli.run_commands:run", "Execute a quantum graph on this machine."),
}


class LazyGroup(click.Group):
    """A click group that imports subcommands on first use.

    Parameters
    ----------
    lazy_commands : `dict` [`str`, `tuple` [`str`, `str`]], optional
        Command name -> (``"module:attribute"``, short help).
    **kwargs
        Passed to `click.Group`.
    """

    def __init__(
        self,
        *args,
        lazy_commands: dict[str, tuple[str, str]] | None = None,
        plugin_group: str | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, tuple[str, str]] = dict(lazy_commands or {})
        self.plugin_group = plugin_group
        self._plugins_read = plugin_group is None

    def _read_plugins(self) -> None:
        """Add the commands other packages declare in the entry-point group (once; ours win)."""
        if self._plugins_read:
            return
        self._plugins_read = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=self.plugin_group):
            if entry.name not in self.lazy_commands:
                self.lazy_commands[entry.name] = (entry.value, "")

    def add_lazy_command(self, name: str, target: str, short_help: str = "") -> None:
        """Register ``name`` to be imported from ``target`` (``"module:attribute"``) on use."""
        if ":" not in target:
            raise ValueError(f"lazy command target {target!r} must look like 'package.module:attribute'")
        self.lazy_commands[name] = (target, short_help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._read_plugins()
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name not in self.lazy_commands:
            self._read_plugins()
        if command is not None or name not in self.lazy_commands:
            return command
        command = self._load(name)
        self.add_command(command, name)
        return command

    def _load(self, name: str) -> click.Command:
        target, short_help = self.lazy_commands[name]
        module_name, _, attribute = target.partition(":")
        try:
            command = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as err:
            return _unavailable(name, target, short_help, err)
        if not isinstance(command, click.Command):
            return _unavailable(name, target, short_help, TypeError(f"{target} is not a click command"))
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands from the registry's short help, without importing their modules."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit=formatter.width - 6 - len(name))))
            elif self.lazy_commands[name][1]:
                rows.append((name, self.lazy_commands[name][1]))
            else:  # a plugin's command: its own help is the only description there is
                command = self.get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, command.get_short_help_str(limit=formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _unavailable(name: str, target: str, short_help: str, err: Exception) -> click.Command:
    """A command that explains why the real one could not be loaded."""

    @click.command(
        name=name,
        help=f"{short_help} (not available: {err})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def command() -> None:
        raise click.ClickException(
            f"'supertask {name}' is not available in this installation: importing {target} failed "
            f"({type(err).__name__}: {err}). Check that the package is fully installed "
            "(pip install -e . in the source tree) and at the same version as its dependencies."
        )

    return command


@click.group(cls=LazyGroup, lazy_commands=LAZY_COMMANDS, plugin_group=PLUGIN_GROUP)
@click.version_option(package_name="supertask")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Level of the log messages printed to stderr (per-quantum log files always get INFO and above).",
)
def main(log_level: str) -> None:
    """SuperTask pipelines: inspect pipelines, plan quantum graphs, run them."""
    # The level filters the console only: the loggers stay at INFO so that each quantum's
    # log file (supertask run) records what its task said.
    root = logging.getLogger()
    console = next((h for h in root.handlers if getattr(h, "_supertask_console", False)), None)
    if console is None:  # once per process, however often main() runs (tests call it repeatedly)
        console = logging.StreamHandler()
        console._supertask_console = True  # type: ignore[attr-defined]
        console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(console)
    console.setLevel(log_level.upper())
    logging.getLogger("supertask").setLevel(min(logging.INFO, logging.getLevelName(log_level.upper())))


if __name__ == "__main__":  # pragma: no cover
    main()
