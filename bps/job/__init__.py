"""The batch job behind ``run_quantum``: staging and a manifest around the core quantum runner.

A job runs its quanta with `supertask.execution.single_quantum.run_quantum` (the runner
of ``supertask run`` too) through a `supertask.execution.quantum_butler.QuantumButler`
over its scratch directory; what is batch-only is a layer around that core:

- `placement`: where a job's files live outside scratch (shared datastore, or
  directories of a workflow system's file transfer);
- `backend`: the supertask services a job uses (graph file, pipeline, datastore,
  the rare registry look-up), which tests replace with stand-ins;
- `stage`: stage-in of inputs (links, checks, tombstones of no-work producers) and
  stage-out of outputs and tombstones (atomic, never over a registered file);
- `runner`: `run_job`, the quanta of one job in dependency order, with restarts from
  the job's manifest.

The command line is ``bps.run_quantum``. Nothing here is imported before a job needs it:
every job of a workflow pays for what its start-up imports.
"""
