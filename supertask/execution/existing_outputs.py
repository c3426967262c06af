"""What to do with quanta whose outputs are registered already: skip, clobber, or refuse.

The rule that keeps a registered file from ever being replaced starts here. Before a
plan is built or run into a RUN, the outputs the registry already holds are looked up,
and every quantum with any of them is

- skipped, when all its outputs exist in a collection the user named for skipping
  (``--skip-existing-in COLLECTIONS``; ``--skip-existing`` and ``--extend-run`` name the
  output run): its outputs are read from there by its consumers;
- unregistered first, when the user asked for it (``--clobber-outputs``): its outputs
  in the output run are removed from the registry, so the new ones can be published;
- otherwise refused, before anything runs, with `OutputExistsError` naming the options.

The same options mean the same at planning (``supertask qgraph``) and at execution
(``supertask run``), as in the reference middleware's ``pipetask``. Planning and the
run both check, because a saved graph may be run long after it was planned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..repo.dataid import DataId

__all__ = ["ExistingOutputs", "OutputPolicy", "classify_existing", "find_registered"]

Key = tuple[str, DataId]


@dataclass(frozen=True)
class OutputPolicy:
    """The user's answer to "some outputs exist already" (all off: refuse)."""

    #: skip quanta whose outputs all exist in the output run (``--skip-existing``)
    skip_existing: bool = False
    #: skip quanta whose outputs all exist in these collections (``--skip-existing-in``)
    skip_existing_in: tuple[str, ...] = ()
    #: add to an existing RUN, skipping quanta done there (``--extend-run``)
    extend_run: bool = False
    #: unregister outputs in the output run that are in the way (``--clobber-outputs``)
    clobber_outputs: bool = False

    def skip_collections(self, output_run: str) -> list[str]:
        """The collections searched for outputs that make a quantum skippable, in order."""
        names = list(self.skip_existing_in)
        if (self.skip_existing or self.extend_run) and output_run not in names:
            names.append(output_run)
        return names


@dataclass
class ExistingOutputs:
    """The decision for one plan."""

    #: quantum ids (or quantum objects, for the planner) whose outputs all exist: not run
    skipped: list[Any] = field(default_factory=list)
    #: registered datasets (in the output run) to unregister before the run
    clobber: list[Any] = field(default_factory=list)
    #: the existing outputs of the skipped quanta, by key: their consumers read these
    found: dict[Key, Any] = field(default_factory=dict)


def find_registered(registry: Any, names: Iterable[str], collections: Sequence[str]) -> dict[Key, Any]:
    """Registered datasets of the given types in ``collections`` (first in search order), by key.

    Collections or dataset types that do not exist yet hold nothing.
    """
    found: dict[Key, Any] = {}
    if not collections:
        return found
    for name in sorted(set(names)):
        try:
            datasets = registry.queryDatasets(name, list(collections))
        except (KeyError, LookupError):
            continue
        except Exception as err:  # an unknown RUN or type, whatever the registry calls it
            if type(err).__name__ not in ("RegistryError", "MissingDatasetTypeError"):
                raise
            continue
        for d in datasets:
            found.setdefault((name, d.dataId), d)
    return found


def classify_existing(
    quanta: Iterable[Any], registry: Any, output_run: str, policy: OutputPolicy
) -> ExistingOutputs:
    """Decide, for each quantum with registered outputs, whether it is skipped or clobbered.

    Raises
    ------
    OutputExistsError
        If a quantum would write an output registered in ``output_run`` and the policy
        neither skips nor clobbers it (no file is written and nothing is registered).
    """
    from ..repo.registry import OutputExistsError

    quanta = list(quanta)
    names = {d.datasetType.name for q in quanta for d in q.iterOutputs()}
    skip_in = policy.skip_collections(output_run)
    skippable = find_registered(registry, names, skip_in)
    in_run = skippable if skip_in == [output_run] else find_registered(registry, names, [output_run])
    # only datasets that are really in the output run block it (a chain may resolve elsewhere)
    in_run = {k: d for k, d in in_run.items() if getattr(d, "run", output_run) == output_run}
    decision = ExistingOutputs()
    refused: list[tuple[Any, list[Key], bool]] = []
    for q in quanta:
        keys = [d.key for d in q.iterOutputs()]
        if keys and all(k in skippable for k in keys):
            decision.skipped.append(q)
            decision.found.update((k, skippable[k]) for k in keys)
            continue
        blocking = [k for k in keys if k in in_run]
        if not blocking:
            continue
        if policy.clobber_outputs:
            decision.clobber.extend(in_run[k] for k in blocking)
        else:
            refused.append((q, blocking, len(blocking) < len(keys)))
    if refused:
        raise OutputExistsError(_refusal(output_run, refused, policy))
    return decision


def _refusal(output_run: str, refused: list[tuple[Any, list[Key], bool]], policy: OutputPolicy) -> str:
    q, blocking, _ = refused[0]
    partial = sum(1 for *_, p in refused if p)
    name, dataId = blocking[0]
    example = f"{q.taskLabel} {dict(q.dataId)}: {name} {dict(dataId)}"
    if partial:
        how = (
            f"{partial} of them have only some of their outputs, which no skip option skips: "
            "--clobber-outputs unregisters those outputs and runs the quanta again"
        )
    else:
        how = (
            "--skip-existing (or --extend-run) leaves out quanta whose outputs all exist; "
            "--clobber-outputs unregisters them and runs the quanta again"
        )
    return (
        f"{len(refused)} quanta would write outputs already registered in RUN {output_run!r} "
        f"(e.g. {example}); registered files are never replaced: {how}; or write to a new RUN (-o NEW_RUN)"
    )
