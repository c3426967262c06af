"""Group quanta into clusters: one batch job runs one cluster.

Tens of thousands of sub-minute jobs swamp a scheduler and shared software areas
(on a real 4-slot pool the reference's 105-quantum demo DAG took 220 s as 107 jobs and
72 s clustered per exposure as 7: job start-up and scheduling dominate), so
quanta are grouped by units: e.g. every quantum of one (tract, patch), or the
quanta of some task labels per visit, with a cap on the cluster size so that one
failure does not lose too much work. A quantum that no rule matches is a cluster
of its own.

The clusters' dependency graph must stay acyclic: a rule that groups, per patch,
a task *before* and a task *after* a gathering task that reads every patch would
make a cluster depend on itself through the gatherer. That is detected and
reported with the labels to separate, never silently "fixed".
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .workflow import safe_name


class ClusteringError(ValueError):
    """The clustering rules cannot be applied; the message says which rule to change."""


class QuantumLike(Protocol):
    """What clustering needs of a quantum (`supertask.quantum.Quantum` satisfies it)."""

    @property
    def id(self) -> int | None: ...

    @property
    def taskLabel(self) -> str: ...

    @property
    def dataId(self) -> Mapping[str, Any]: ...

    @property
    def inputs(self) -> Mapping[str, Sequence[Any]]: ...

    @property
    def outputs(self) -> Mapping[str, Sequence[Any]]: ...


@dataclass(frozen=True)
class ClusterRule:
    """Quanta of ``labels`` (every label when empty) that have all ``units`` are grouped by those units.

    ``max_size`` caps the quanta per cluster; bigger groups are split in quantum-id
    (dependency) order, which keeps the split clusters acyclic among themselves.
    """

    name: str
    labels: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    max_size: int | None = None

    def matches(self, quantum: QuantumLike) -> bool:
        if self.labels and quantum.taskLabel not in self.labels:
            return False
        return all(u in quantum.dataId for u in self.units)


@dataclass
class Cluster:
    """Quanta run together by one job."""

    name: str
    label: str
    quantum_ids: list[int] = field(default_factory=list)
    task_labels: list[str] = field(default_factory=list)
    data_id: dict[str, Any] = field(default_factory=dict)


def cluster_quanta(quanta: Iterable[QuantumLike], rules: Sequence[ClusterRule]) -> list[Cluster]:
    """Group ``quanta`` (in dependency order) into clusters by the first rule each matches.

    Returns clusters in the order of their first quantum; their names are unique and
    file-name safe. Unmatched quanta each make a cluster named after label and data ID.

    Raises
    ------
    ClusteringError
        If a rule names a task label whose quanta lack some of the rule's units (they
        would silently stay single jobs), or the rules are malformed.
    """
    _check_rules(rules)
    groups: dict[tuple[Any, ...], Cluster] = {}
    #: (rule name, task label) -> (units the rule needs that the label's quanta lack, the label's units)
    unmet: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for quantum in quanta:
        if quantum.id is None:
            raise ClusteringError(f"{quantum!r} has no id: cluster quanta loaded from a saved graph")
        rule = next((r for r in rules if r.matches(quantum)), None)
        named = next((r for r in rules if quantum.taskLabel in r.labels), None)
        if named is not None and named is not rule and not named.matches(quantum):
            missing = [u for u in named.units if u not in quantum.dataId]
            unmet.setdefault((named.name, quantum.taskLabel), (missing, list(quantum.dataId)))
        if rule is None:
            key: tuple[Any, ...] = ("", quantum.id)
            values = dict(quantum.dataId)
            name, label = _join(quantum.taskLabel, values), quantum.taskLabel
        else:
            values = {u: quantum.dataId[u] for u in sorted(rule.units)}
            key = (rule.name, tuple(values.items()))
            name, label = _join(rule.name, values), rule.name
        cluster = groups.get(key)
        if cluster is None:
            cluster = groups[key] = Cluster(name=name, label=label, data_id=values)
        cluster.quantum_ids.append(quantum.id)
        if quantum.taskLabel not in cluster.task_labels:
            cluster.task_labels.append(quantum.taskLabel)
    if unmet:
        raise ClusteringError(_unmet_message(rules, unmet))
    rule_by_name = {r.name: r for r in rules}
    result: list[Cluster] = []
    for (rule_name, _), cluster in groups.items():
        cap = rule_by_name[rule_name].max_size if rule_name else None
        result.extend(_split(cluster, cap))
    result.sort(key=lambda c: c.quantum_ids[0])
    _make_names_unique(result)
    return result


def order_clusters(clusters: Sequence[Cluster], parents: Mapping[str, set[str]]) -> list[str]:
    """Cluster names in an order where parents come first; a cycle raises `ClusteringError`."""
    sorter = graphlib.TopologicalSorter({c.name: sorted(parents.get(c.name, ())) for c in clusters})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as err:
        cycle = err.args[1]
        by_name = {c.name: c for c in clusters}
        labels = sorted({lbl for name in cycle if name in by_name for lbl in by_name[name].task_labels})
        raise ClusteringError(
            f"clustering makes jobs depend on each other in a cycle ({' -> '.join(cycle)}): a cluster holds "
            f"task labels both before and after another job it depends on. Task labels involved: {labels}. "
            "Put the labels that come before and after a gathering task into separate clustering rules."
        ) from None
    return order


def _check_rules(rules: Sequence[ClusterRule]) -> None:
    seen: set[str] = set()
    for rule in rules:
        if not rule.name or safe_name(rule.name) != rule.name:
            raise ClusteringError(
                f"clustering rule name {rule.name!r}: use letters, digits, '.', '_' or '-' (it names jobs)"
            )
        if rule.name in seen:
            raise ClusteringError(f"clustering rule name {rule.name!r} is used twice: names must be unique")
        seen.add(rule.name)
        if not rule.units and not rule.labels:
            raise ClusteringError(
                f"clustering rule {rule.name!r} has neither labels nor units: it would put every quantum "
                "in one job; give units (e.g. [tract, patch]) or labels"
            )


def _unmet_message(
    rules: Sequence[ClusterRule], unmet: Mapping[tuple[str, str], tuple[list[str], list[str]]]
) -> str:
    """A rule naming a label whose quanta lack the rule's units would leave them unclustered."""
    units = {r.name: list(r.units) for r in rules}
    lines = [
        f"clustering rule {rule!r} groups by {units[rule]}, but task label {label!r} has no "
        f"{', '.join(repr(u) for u in missing)} (its quanta have {have}): they would stay single jobs"
        for (rule, label), (missing, have) in unmet.items()
    ]
    return "\n  ".join(
        [
            *lines,
            "give each rule units that all its labels have, or one rule per group of labels "
            "sharing units (e.g. isr by exposure, calibrate by visit)",
        ]
    )


def _join(prefix: str, values: Mapping[str, Any]) -> str:
    return safe_name("_".join([prefix, *(str(v) for v in values.values())]))


def _split(cluster: Cluster, cap: int | None) -> list[Cluster]:
    if cap is None or len(cluster.quantum_ids) <= cap:
        return [cluster]
    ids = cluster.quantum_ids
    chunks = [ids[i : i + cap] for i in range(0, len(ids), cap)]
    return [
        Cluster(
            name=f"{cluster.name}_{n}",
            label=cluster.label,
            quantum_ids=chunk,
            task_labels=list(cluster.task_labels),
            data_id=dict(cluster.data_id),
        )
        for n, chunk in enumerate(chunks)
    ]


def _make_names_unique(clusters: list[Cluster]) -> None:
    seen: set[str] = set()
    for cluster in clusters:
        if cluster.name in seen:
            cluster.name = f"{cluster.name}_q{cluster.quantum_ids[0]}"
        seen.add(cluster.name)
