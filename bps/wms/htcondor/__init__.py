"""HTCondor DAGMan: translate a generic workflow into a DAG and follow it.

Modules, one job each: `layout` (file names in a submit directory), `quoting`
(the submit language's quoting rules), `memory` (memory escalation expressions),
`templates` (submit descriptions from ``condor_templates/``), `checks` (what a real
pool would refuse, found at prepare time), `translator` (the DAG writer), `eventlog`
and `nodestatus` (readers of DAGMan's outputs), `report` and `service`
(`HTCondorService`). Only `service` imports ``htcondor2``, and only when submitting.
"""
