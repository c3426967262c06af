"""The exception raised for every pipeline definition problem."""

from __future__ import annotations


class PipelineError(ValueError):
    """A pipeline definition is wrong; the message names the file, the task label and the fix."""


class UnknownLabelError(PipelineError, KeyError):
    """A task label that the pipeline does not contain (also a `KeyError`, for ``Mapping.get``)."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])


def where(source: str | None, label: str | None = None) -> str:
    """``"pipeline.yaml: task 'isr': "`` (the parts that are known) for error messages."""
    parts = []
    if source:
        parts.append(source)
    if label:
        parts.append(f"task {label!r}")
    return ": ".join(parts) + (": " if parts else "")
