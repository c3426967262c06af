"""Pipeline steps and the selection of part of a pipeline (``pipeline.yaml#subset``).

A data-release pipeline is too big to plan and run at once: operators run it *step by
step*, each step a named subset of the tasks, run over shards of the data (one visit,
one tract) and written to its own RUN, which the next step reads. A pipeline file
declares its steps in order::

    subsets:
      singleFrame: [isr, calibrate]
      coadd: [makeWarp, assembleCoadd, detectCoadd]
    steps:
      - subset: singleFrame
        units: [visit]          # the units this step is sharded over
      - subset: coadd
        units: [tract]

`check_steps` refuses steps that could not be run in order when the pipeline is
validated, and `check_step_units` those that could not be sharded as declared when a
pipeline file is read; `split_pipeline_spec` and `select` implement the
``FILE#NAME`` (or ``--subset NAME``) selection shared by ``qgraph``, ``run`` and ``bps``.
"""

# Annotations here are evaluated at import (no ``from __future__ import annotations``): with
# string annotations, ``typing.NamedTuple`` makes a ``ForwardRef`` of each field, whose
# ``compile`` call costs a batch job Python's one-time compiler set-up (about 2.5 ms CPU).

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..config.errors import suggest
from .errors import PipelineError, where

if TYPE_CHECKING:
    from ..repo.units import Universe
    from .core import Pipeline

__all__ = ["Step", "check_step_units", "check_steps", "select", "split_pipeline_spec", "shard_units_of"]


class Step(NamedTuple):
    """One step of a pipeline: a named subset, run over shards of these units.

    A named tuple, not a dataclass: pipelines are loaded by every batch job, and
    ``dataclasses`` (with ``inspect``) is not otherwise on a job's import path.

    Attributes
    ----------
    subset : `str`
        The name of the subset holding the step's tasks (also the step's name).
    units : `tuple` [`str`, ...]
        The units the step is sharded over: any one value of them (one visit, one
        tract) can be planned and run on its own.
    """

    subset: str
    units: tuple[str, ...]

    def toDict(self) -> dict[str, Any]:
        """The pipeline-file form of the step."""
        return {"subset": self.subset, "units": list(self.units)}


def split_pipeline_spec(spec: str) -> tuple[str, str | None]:
    """``"pipe.yaml#step1"`` -> ``("pipe.yaml", "step1")``; no ``#`` -> ``(spec, None)``.

    The part after the last ``#`` names a subset or step, or gives task labels
    separated by commas.
    """
    path, sep, name = spec.rpartition("#")
    if not sep:
        return spec, None
    return path, name.strip()


def select(pipeline: "Pipeline", name: str) -> "Pipeline":
    """The part of ``pipeline`` named by ``name``: a subset (or step), or comma-separated labels.

    Dataset types the selected tasks read that other tasks write become overall inputs
    (they are read from the input collections, e.g. the RUN of the previous step).

    Raises
    ------
    PipelineError
        If ``name`` is empty, or names neither a subset nor task labels of the pipeline.
    """
    if not name:
        raise PipelineError(
            f"{where(pipeline.source)}an empty selection after '#': give a subset or step name "
            f"(subsets: {', '.join(pipeline.subsets) or '(none)'}) or task labels separated by commas"
        )
    if name in pipeline.subsets:
        return pipeline.subset(name)
    labels = [label.strip() for label in name.split(",") if label.strip()]
    unknown = [label for label in labels if label not in pipeline]
    if not unknown:
        return pipeline.subsetOf(labels)
    choices = [*pipeline.subsets, *pipeline]
    bad = unknown[0]
    raise PipelineError(
        f"{where(pipeline.source)}no subset, step or task labelled {bad!r}.{suggest(bad, choices)} "
        f"Subsets: {', '.join(pipeline.subsets) or '(none)'}; task labels: {', '.join(pipeline)}."
    )


def shard_units_of(task_units: Iterable[str], universe: "Universe") -> set[str]:
    """The units a task whose quanta have ``task_units`` can be sharded over.

    Its quantum's units, the units they require and imply (a visit implies its physical
    filter and band), and units joined to them by a non-spatial relation (a task per
    exposure can be sharded by visit: ``visit_definition`` says which visit an exposure
    belongs to). A spatial overlap (visit with patch) does not count: a task per patch
    gathers from many visits, and a shard per visit would split its inputs.

    The universe does not say which side of a relation is the "one": a non-spatial
    relation lets either side shard the other, so with snaps (several exposures per
    visit) a step per visit must be sharded by visit, not exposure.
    """
    units: set[str] = set()
    pending = list(task_units)
    while pending:
        unit = pending.pop()
        if unit in units or unit not in universe.units:
            continue
        units.add(unit)
        pending.extend(universe.requiredKeys(unit))
        pending.extend(universe.units[unit].implies)
    spatial = {overlap.relation for overlap in universe.spatialOverlaps}
    for relation in universe.relations.values():
        if relation.name in spatial or not relation.joinWhen:
            continue
        if any(unit in units for unit in relation.units):
            units.update(universe.expand(relation.units))
    return units


def check_steps(pipeline: "Pipeline", steps: Sequence[Step]) -> None:
    """Refuse steps that cannot be run in their order.

    Checks, each with its own message naming the step and the fix: every step names a
    subset, no subset is two steps, every task is in exactly one step, no step reads
    what a later step writes, and every step names its sharding units. Needs no
    universe, so it runs wherever a pipeline is validated (a batch job rebuilding its
    tasks too); `check_step_units` checks the units themselves.

    Raises
    ------
    PipelineError
    """
    if not steps:
        return
    source = where(pipeline.source)
    seen: set[str] = set()
    step_of: dict[str, str] = {}
    for number, step in enumerate(steps, 1):
        if step.subset not in pipeline.subsets:
            raise PipelineError(
                f"{source}step {number} names unknown subset {step.subset!r}."
                f"{suggest(step.subset, pipeline.subsets)} A step is a subset: define it under 'subsets:' "
                f"(subsets: {', '.join(pipeline.subsets) or '(none)'})."
            )
        if step.subset in seen:
            raise PipelineError(
                f"{source}subset {step.subset!r} is declared as a step twice; list each step once"
            )
        seen.add(step.subset)
        for label in pipeline.subsets[step.subset]:
            if label in step_of:
                raise PipelineError(
                    f"{source}task {label!r} is in step {step_of[label]!r} and in step {step.subset!r}; "
                    "a task belongs to one step: remove it from one of the two subsets"
                )
            step_of[label] = step.subset
    missing = [label for label in pipeline if label not in step_of]
    if missing:
        raise PipelineError(
            f"{source}task {missing[0]!r} is in no step; when a pipeline declares steps, every task is in "
            f"one: add it to the subset of a step (steps: {', '.join(s.subset for s in steps)})"
        )
    order = {step.subset: i for i, step in enumerate(steps)}
    flow = pipeline.datasetTypes()
    for name, readers in flow.consumers.items():
        producer = flow.producers.get(name)
        if producer is None:
            continue
        for reader in readers:
            if order[step_of[reader]] < order[step_of[producer]]:
                raise PipelineError(
                    f"{source}step {step_of[reader]!r} (task {reader!r}) reads {name!r}, which task "
                    f"{producer!r} of the later step {step_of[producer]!r} writes; put "
                    f"{step_of[producer]!r} before {step_of[reader]!r} in 'steps:' or move the task"
                )
    for step in steps:
        if not step.units:
            raise PipelineError(
                f"{source}step {step.subset!r} has no 'units': name the units it is sharded over "
                "(e.g. units: [visit]), so each shard can be planned on its own"
            )


def check_step_units(pipeline: "Pipeline", universe: "Universe | None" = None) -> None:
    """Refuse a sharding unit that does not exist or that a task of its step cannot be split by.

    Run when a pipeline file is read (`Pipeline.fromFile`, every command that takes one),
    not when a batch job rebuilds its tasks from a graph's pipeline text: the universe is
    not on a job's start-up path.

    Raises
    ------
    PipelineError
    """
    if not pipeline.steps:
        return
    if universe is None:
        from ..repo.units import Universe

        universe = Universe.default()
    source = where(pipeline.source)
    for step in pipeline.steps:
        for unit in step.units:
            if unit not in universe.units:
                raise PipelineError(
                    f"{source}step {step.subset!r} is sharded over unknown unit {unit!r}."
                    f"{suggest(unit, universe.units)} Units: {', '.join(universe.units)}."
                )
        for label in pipeline.subsets.get(step.subset, []):
            task_units = pipeline[label].taskClass.quantumUnits
            allowed = shard_units_of(task_units, universe)
            for unit in step.units:
                if unit not in allowed:
                    raise PipelineError(
                        f"{source}step {step.subset!r} is sharded over {unit!r}, but task {label!r} "
                        f"(quanta per {', '.join(task_units) or 'nothing'}) cannot be split by {unit!r}: "
                        f"one of its quanta may need data of several {unit!r} values. Shard the step over "
                        f"units each of its tasks can be split by ({label!r}: {', '.join(sorted(allowed))}), "
                        "or move the task to another step"
                    )
