"""Stage-in and stage-out of one quantum of a batch job: the batch layer around the core runner.

Inputs are made readable in scratch (a link on a shared filesystem, else a copy), each
checked against its registration when prepare recorded it; an input that is a tombstone
(its producer, in another job, found no work) joins `Staging.missing`, so the core's
no-work rule drops it. Outputs are published at their datastore path (shared staging,
`bps.publish`: never over a registered dataset's file) or copied to the workflow
system's outputs directory (transfer staging), atomically; an output that will never
exist leaves a tombstone where it would have gone. See `bps.staging` for the files.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import exit_codes
from ..names import dataset_lfn
from ..publish import RegisteredOutputError, publish
from ..staging import StagedFile, copy_atomic, is_tombstone, link_or_copy, verify_input, write_tombstone
from .backend import Store
from .placement import Placement

log = logging.getLogger("bps.run_quantum")


class Staging:
    """What a job knows of its datasets' files, and the moves between them and scratch.

    Parameters
    ----------
    placement : `Placement`
        Where files live outside scratch.
    store : `Store`
        Gives datastore-relative paths (the repository's datastore in shared staging).
    scratch : `Path`
        The job's scratch directory.
    output_run : `str`
        The RUN the graph writes to (and the run of inputs not resolved to another).
    made_here : `set`
        Keys of every output of the job's quanta: never staged in.
    input_locations, input_checks : `dict`
        ``{lfn: path}`` of overall inputs not at their template path; ``{lfn: (size, checksum)}``
        of registered overall inputs, verified on stage-in.
    registered : callable
        ``registered(dataset)`` -> the registered checksum of an output, or None: asked
        only when the output's datastore path already holds other bytes.
    """

    def __init__(
        self,
        placement: Placement,
        store: Store,
        scratch: Path,
        output_run: str,
        made_here: set[tuple[str, Any]],
        input_locations: dict[str, str],
        input_checks: dict[str, tuple[int | None, str | None]],
        registered: Callable[[Any], str | None],
    ):
        self.placement = placement
        self.store = store
        self.scratch = scratch
        self.output_run = output_run
        self.made_here = made_here
        self.input_locations = input_locations
        self.input_checks = input_checks
        self.registered = registered
        #: where each dataset a quantum of this job may read is (staged inputs, staged outputs)
        self.locations: dict[tuple[str, Any], Path] = {}
        #: keys of outputs that will never exist: their quantum had no work
        self.missing: set[tuple[str, Any]] = set()

    def stage_in(self, quantum: Any) -> int | None:
        """Make the quantum's inputs that this job does not make readable in scratch; an exit code on failure."""
        placement = self.placement
        for d in quantum.iterInputs():
            if d.key in self.locations or d.key in self.made_here or d.key in self.missing:
                continue
            lfn = dataset_lfn(d.datasetType.name, dict(d.dataId))
            if placement.transfer:
                src = placement.input_source("", lfn)
            else:
                relative = self.input_locations.get(lfn) or self.store.path(
                    d.datasetType, d.dataId, d.run or self.output_run
                )
                src = placement.input_source(relative, lfn)
            dest = self.scratch / "in" / lfn
            try:
                link_or_copy(src, dest)
            except FileNotFoundError as err:
                log.error("quantum %s %r: %s", quantum.taskLabel, quantum.dataId, err)
                return exit_codes.MISSING_INPUT
            except OSError as err:
                log.error(
                    "quantum %s %r: staging in %s failed: %s", quantum.taskLabel, quantum.dataId, src, err
                )
                return exit_codes.TEMPORARY
            if lfn in self.input_checks and (problem := verify_input(dest, *self.input_checks[lfn])):
                log.error(
                    "quantum %s %r: input %s %r at %s does not match its registration: %s. The file changed "
                    "after it was registered (corrupted, truncated or replaced): restore it from a copy, or "
                    "remove the dataset and rerun what made it",
                    quantum.taskLabel,
                    quantum.dataId,
                    d.datasetType.name,
                    dict(d.dataId),
                    src,
                    problem,
                )
                return exit_codes.DATA_ERROR
            if is_tombstone(dest):  # its producer, in another job, found no work
                self.missing.add(d.key)
            else:
                self.locations[d.key] = dest
        return None

    def stage_out(
        self, quantum: Any, written: dict[tuple[str, Any], Path], no_work: str
    ) -> list[StagedFile] | int:
        """Put each output of the quantum in place (a tombstone for each it did not write).

        ``written`` maps output keys to their files in scratch; ``no_work`` is why the
        quantum had no work ('' if it had). Returns what the manifest records for the
        quantum, or an exit code: `exit_codes.DATA_ERROR` when an output's datastore path
        holds a registered dataset's file (the plan is stale), `exit_codes.TEMPORARY` for
        I/O failures. A staged output becomes readable by the job's later quanta.
        """
        placement, output_run = self.placement, self.output_run
        staged: list[StagedFile] = []
        for d in quantum.iterOutputs():
            key = d.key
            path = written.get(key)
            relative = self.store.path(d.datasetType, d.dataId, output_run)
            lfn = dataset_lfn(d.datasetType.name, dict(d.dataId))
            target = placement.output_target(relative, lfn)
            if path is None and not no_work:
                log.warning(
                    "quantum %s %r did not write %s %r", quantum.taskLabel, quantum.dataId, key[0], key[1]
                )
            try:
                if path is None:  # will never exist: leave a tombstone where it would be, for consumers
                    reason = no_work or f"{quantum.taskLabel} did not write it"
                    if placement.transfer:
                        size, checksum = write_tombstone(target, d.datasetType.name, dict(d.dataId), reason)
                    else:  # at a datastore path: published like an output, never over a registered file
                        tomb = self.scratch / "tombstones" / relative
                        write_tombstone(tomb, d.datasetType.name, dict(d.dataId), reason)
                        size, checksum = publish(tomb, target, functools.partial(self.registered, d))
                elif placement.transfer:
                    size, checksum = copy_atomic(path, target)
                else:
                    size, checksum = publish(path, target, functools.partial(self.registered, d))
            except RegisteredOutputError as err:
                log.error(
                    "%s %s is already registered in RUN %r with other content (registered checksum %s; file %s, "
                    "left unchanged): this graph was planned before it was registered; plan again with "
                    "--skip-existing-in %s or --extend-run (or --clobber-outputs to replace it), or into a new RUN",
                    d.datasetType.name,
                    dict(d.dataId),
                    output_run,
                    err,
                    target,
                    output_run,
                )
                return exit_codes.DATA_ERROR
            except OSError as err:
                log.error("staging out %s to %s failed: %s", path or "a tombstone", target, err)
                return exit_codes.TEMPORARY
            except Exception as err:  # the registry could not be read: replace nothing
                log.error(
                    "%s holds other content than %s %s of this job, and whether it is registered in RUN %r "
                    "could not be read (%s: %s); it is left unchanged (retry, or remove it if it is not registered)",
                    target,
                    d.datasetType.name,
                    dict(d.dataId),
                    output_run,
                    type(err).__name__,
                    err,
                )
                return exit_codes.TEMPORARY
            staged.append(
                StagedFile(
                    lfn=lfn,
                    dataset_type=d.datasetType.name,
                    units=list(d.datasetType.units),
                    storage_class=d.datasetType.storageClass,
                    data_id=dict(d.dataId),
                    path=placement.recorded_path(relative),
                    size=size,
                    checksum=checksum,
                    tombstone=path is None,
                )
            )
        for f, d in zip(staged, quantum.iterOutputs(), strict=True):
            if f.tombstone:
                self.missing.add(d.key)
            else:
                self.locations[d.key] = placement.output_target(f.path, f.lfn)
        return staged
