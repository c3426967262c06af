"""Parsl as a workflow system: each job a Parsl ``bash_app`` running ``run_quantum``.

Modules: `settings` (the ``site.parsl`` keys, checked at prepare), `commands` (each job's
command line and the resource classes that become executors), `state` (the workflow
process's state file), `service` (prepare, submit, report, restart, cancel: never imports
``parsl``), `config` (the ``parsl.Config`` of a run: imports ``parsl``), `driver` (the
workflow process, ``python -m bps.wms.parsl.driver SUBMIT_DIR``), `interchange_guard` (Parsl's
interchange ends with the workflow process). See docs/parsl.md.
"""
