"""`Task` and `Struct` (DMTN-055 section 2).

A task is a configurable, composable callable: it owns a frozen config, a logger in
the ``supertask.<label>.<subtask>`` hierarchy, a metadata container, and subtasks
made from `~supertask.config.ConfigurableField` entries of its config. Importing
this module is cheap (stdlib ``logging`` plus the config package): every batch job
does it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from .config import Config, ConfigurableValue, FieldValidationError

__all__ = ["Task", "Struct", "TaskMetadata", "TaskError", "NoWorkFound", "LOGGER_ROOT"]

LOGGER_ROOT = "supertask"
"""Every task logger is a child of this logger."""


class TaskError(RuntimeError):
    """A task was constructed or used incorrectly."""


class NoWorkFound(Exception):
    """Raised by a task when its quantum's inputs hold nothing it can work with.

    This is an outcome, not a failure: executors count the quantum as "no work",
    register nothing for it, and give its consumers whatever other inputs exist (a
    consumer left without a required input ends as "no work" too). Batch jobs exit
    with ``bps.exit_codes.TASK_NO_WORK``, which is never retried: the same inputs
    would give the same answer.
    """


class Struct:
    """A named bundle of results: ``Struct(exposure=e, catalog=c).exposure``.

    Tasks return one from ``run`` so that callers (and `SuperTask.runQuantum`) find
    results by name rather than by position.
    """

    def __init__(self, **kwargs: Any):
        for name in kwargs:
            if name.startswith("__"):
                raise TypeError(f"Struct attribute names must not start with '__': {name!r}")
        self.__dict__.update(kwargs)

    if TYPE_CHECKING:
        # the attributes are the keyword arguments: any name, any type, as far as a checker knows

        def __getattr__(self, name: str) -> Any: ...

    def getDict(self) -> dict[str, Any]:
        """A copy of the attributes as a dict."""
        return dict(self.__dict__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Struct):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"Struct({inner})"


class TaskMetadata(dict[str, Any]):
    """Processing metadata of one task: a dict with `add` for accumulating lists."""

    def add(self, name: str, value: Any) -> None:
        """Append ``value`` to the list stored under ``name``."""
        self.setdefault(name, []).append(value)


class Task:
    """Base class of configurable, composable tasks.

    Parameters
    ----------
    config : `Config`, optional
        The configuration; defaults to ``ConfigClass()`` (or the parent's config entry
        for a subtask). It is validated and frozen here: a constructed task never
        changes behaviour.
    name : `str`, optional
        The task's name: its pipeline label, or its field name as a subtask. Defaults
        to ``_DefaultName``.
    parentTask : `Task`, optional
        The parent when this is a subtask; sets the logger hierarchy.
    log : `logging.Logger`, optional
        Use this logger instead of ``supertask.<fullName>``.
    """

    ConfigClass: ClassVar[type[Config]] = Config
    _DefaultName: ClassVar[str] = ""

    def __init__(
        self,
        config: Config | None = None,
        *,
        name: str | None = None,
        parentTask: Task | None = None,
        log: logging.Logger | None = None,
    ):
        name = name or self._DefaultName
        if not name:
            raise TaskError(
                f"{type(self).__name__} needs a name: set _DefaultName on the class or pass name="
            )
        if "." in name:
            raise TaskError(
                f"task name {name!r} must not contain '.' (it is a level of the logger hierarchy)"
            )
        if config is None:
            if parentTask is not None and name in type(parentTask.config)._fields:
                sub = getattr(parentTask.config, name)
                config = sub.value if isinstance(sub, ConfigurableValue) else sub
            else:
                config = self.ConfigClass()
        if not isinstance(config, self.ConfigClass):
            raise TaskError(
                f"{type(self).__name__} needs a {self.ConfigClass.__name__}, got a {type(config).__name__}"
            )
        config.validate()
        config.freeze()
        self.config: Config = config
        self._name = name
        self._parentTask = parentTask
        self._fullName: str = f"{parentTask._fullName}.{name}" if parentTask is not None else name
        self.log = log or logging.getLogger(f"{LOGGER_ROOT}.{self._fullName}")
        self.metadata = TaskMetadata()
        self._subtasks: dict[str, Task] = {}

    def getName(self) -> str:
        """The task's own name (its label or field name)."""
        return self._name

    def getFullName(self) -> str:
        """Dotted names from the top-level task down to this one."""
        return self._fullName

    def makeSubtask(self, name: str, **kwargs: Any) -> Task:
        """Construct the subtask configured by ``self.config.<name>`` and set ``self.<name>``.

        Raises
        ------
        TaskError
            If ``name`` is not a `~supertask.config.ConfigurableField` of the config.
        """
        try:
            value = getattr(self.config, name)
        except FieldValidationError as err:
            raise TaskError(f"cannot make subtask {name!r} of {type(self).__name__}: {err}") from None
        if not isinstance(value, ConfigurableValue):
            raise TaskError(
                f"cannot make subtask {name!r} of {type(self).__name__}: config field {name!r} is not a "
                "ConfigurableField"
            )
        subtask: Task = value.apply(name=name, parentTask=self, **kwargs)
        self._subtasks[name] = subtask
        setattr(self, name, subtask)
        return subtask

    def getFullMetadata(self) -> dict[str, TaskMetadata]:
        """Metadata of this task and all its subtasks, keyed by full name."""
        result = {self._fullName: self.metadata}
        for subtask in self._subtasks.values():
            result.update(subtask.getFullMetadata())
        return result

    def run(self, *args: Any, **kwargs: Any) -> Struct:
        """Do the work on in-memory objects and return a `Struct` (signature set by each task)."""
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._fullName!r}>"
