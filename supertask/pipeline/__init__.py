"""Pipelines: ordered SuperTasks with their configs, and the pipeline YAML file format."""

from .core import Pipeline, PipelineDatasetTypes, TaskDef
from .errors import PipelineError, UnknownLabelError

__all__ = ["Pipeline", "PipelineDatasetTypes", "PipelineError", "TaskDef", "UnknownLabelError"]
