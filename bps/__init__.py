"""Batch processing: a QuantumGraph becomes a workflow of run_quantum jobs on local, HTCondor or Pegasus."""
