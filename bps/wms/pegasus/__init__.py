"""Pegasus 5: translate a generic workflow into a Pegasus workflow and its catalogs, and follow the run.

Modules, one job each: `settings` (the ``pegasus:`` section of a site config,
validated), `catalogs` (replica, transformation and site catalogs, properties),
`translator` (the workflow and the files of a submit directory), `schema`
(validation against Pegasus's published JSON schemas; tests and operators),
`status` (reading ``jobstate.log``) and `service` (`PegasusService`). Only
``Pegasus.api`` is imported; the Pegasus command-line tools are run by `service`
when submitting, restarting or cancelling. See ``docs/pegasus.md``.
"""
