"""Who owned each namespace during a window. Pure: samples and mappings in, owners out.

Two sources, in this order:

- kube-state-metrics' ``kube_namespace_labels`` with the customer label allowlisted: its samples
  over the window are the record of each namespace's owner at every scrape. The owner at an
  instant is the customer label value of the latest sample at or before it ("" when the series
  carries no customer label: nobody); so an owner changes at the first sample showing the new
  value (``owner_pieces``). A namespace whose value changed inside the window has its usage cut
  there, each piece to the owner of that time (the metering meters it from raw samples: a
  counter interpolated at the cut, a gauge's integral cut there).
- otherwise the owners the exporter observed (the Kubernetes API now, or for a backlog window the
  owners recorded closest to it, delivery/owner_history.py): one owner for the whole window.

kube-state-metrics is used only when at least one of its namespaces carries the customer label:
without the label in ``--metric-labels-allowlist`` every namespace would read as owned by nobody.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..report import CustomerUsage, round_amount
from .plan import Window
from .rules import Samples

Piece = tuple[float, float, str]  # [lo, hi) of the window and its owner ("" for none)


def owner_pieces(series: Sequence[tuple[str, Samples]], w: Window) -> list[Piece]:
    """A namespace's owners over [T0, T1), from kube_namespace_labels' samples of each customer
    value (``(customer, samples)``, "" for none): the owner at t is the value of the latest sample
    at or before t (at one instant, a non-empty value before "", then the larger one: copies of
    kube-state-metrics disagreeing for a scrape). Before the first sample, the first sample's
    value. Adjacent pieces of one owner are merged."""
    timeline = sorted((t, customer) for customer, samples in series for t, _ in samples)
    if not timeline:
        return [(w.start, w.end, "")]
    owner = timeline[0][1]
    changes: list[tuple[float, str]] = []
    for t, customer in _one_per_instant(timeline):
        if t <= w.start:
            owner = customer
        elif t < w.end and customer != (changes[-1][1] if changes else owner):
            changes.append((t, customer))
    pieces: list[Piece] = []
    lo = w.start
    for t, customer in changes:
        pieces.append((lo, t, owner))
        lo, owner = t, customer
    pieces.append((lo, w.end, owner))
    return pieces


def _one_per_instant(timeline: Sequence[tuple[float, str]]) -> Iterator[tuple[float, str]]:
    """One value per sample time: sorted by (time, value), the last of each time is the largest."""
    for i, (t, customer) in enumerate(timeline):
        if i + 1 == len(timeline) or timeline[i + 1][0] != t:
            yield t, customer


@dataclass
class WindowOwners:
    """Each namespace's owner in one window.

    ``observed``: the owners the exporter observed (Kubernetes API, or recorded), listed in their
    customers' records even when idle. ``recorded``: kube-state-metrics' value for each namespace
    it reported in the window ("" for none); it overrides ``observed``. ``pieces``: namespaces
    whose kube-state-metrics value changed inside the window, with each owner's piece.
    """

    observed: Mapping[str, str]
    recorded: Mapping[str, str] = field(default_factory=dict)
    pieces: Mapping[str, Sequence[Piece]] = field(default_factory=dict)

    def owner(self, namespace: str) -> str | None:
        """The customer billed for a namespace's usage in the whole window (None: nobody, or the
        namespace has pieces)."""
        if namespace in self.pieces:
            return None
        owner = self.recorded[namespace] if namespace in self.recorded else self.observed.get(namespace)
        return owner or None

    def listed(self) -> Iterator[tuple[str, str]]:
        """(namespace, customer) of every namespace listed in its customer's record whatever its
        usage: observed namespaces the window's record does not give to someone else."""
        for namespace in self.observed:
            owner = self.owner(namespace)
            if owner is not None:
                yield namespace, owner

    def owners_of_pieces(self) -> Iterator[tuple[str, str]]:
        """(namespace, customer) for every owner of a piece of a namespace."""
        for namespace, pieces in self.pieces.items():
            for customer in dict.fromkeys(c for _, _, c in pieces if c):
                yield namespace, customer

    def last_owner(self, namespace: str) -> str | None:
        """The owner at the window's end (a cut namespace's amounts that cannot be cut: the
        answers of custom PromQL templates)."""
        pieces = self.pieces.get(namespace)
        if pieces:
            return pieces[-1][2] or None
        return self.owner(namespace)


@dataclass(frozen=True)
class Field:
    """A report field: its raw amounts are divided by ``scale`` and rounded once, per customer."""

    name: str
    scale: float = 1.0
    integer: bool = False


def customer_usage(
    fields: Sequence[Field],
    amounts: Mapping[str, Mapping[str, float]],
    pieces: Mapping[tuple[str, str, str], float],
    owners: WindowOwners,
) -> Iterator[CustomerUsage]:
    """Fold per-namespace amounts (``{field: {namespace: raw amount}}``) and the owners' pieces
    of namespaces whose owner changed (``{(field, namespace, customer): raw amount}``) into report
    records, yielded in customer order.

    Every customer owning an observed namespace gets a record (zeros when idle); a namespace the
    exporter did not observe (deleted during the window) joins its owner's record when it had
    usage; a namespace cut between owners is listed in each owner's record and each gets its
    piece (a field without pieces there, a custom PromQL template's, goes to the last owner).
    Amounts are scaled to report units and rounded once, per customer.
    """
    namespaces: dict[str, list[str]] = defaultdict(list)
    for namespace, customer in owners.listed():
        namespaces[customer].append(namespace)
    for namespace, customer in owners.owners_of_pieces():
        if namespace not in namespaces[customer]:
            namespaces[customer].append(namespace)
    columns = [amounts.get(f.name, {}) for f in fields]
    for column in columns:
        for namespace, value in column.items():
            if value != 0 and namespace and namespace not in owners.observed:  # "": attributed to none
                owner = owners.last_owner(namespace)
                if owner is not None and namespace not in namespaces[owner]:
                    namespaces[owner].append(namespace)
    split: dict[tuple[str, str], float] = defaultdict(float)  # (field, customer) -> pieces
    cut_fields: set[tuple[str, str]] = set()  # (field, namespace) with pieces
    for (name, namespace, customer), value in pieces.items():
        cut_fields.add((name, namespace))
        if customer:
            split[(name, customer)] += value
    for customer in sorted(namespaces):
        names = sorted(namespaces.pop(customer))
        record = {}
        for f, column in zip(fields, columns, strict=True):
            total = split.get((f.name, customer), 0.0)
            for ns in names:
                if ns in owners.pieces:
                    if (f.name, ns) not in cut_fields and owners.last_owner(ns) == customer:
                        total += column.get(ns, 0.0)
                elif owners.owner(ns) == customer:
                    total += column.get(ns, 0.0)
            record[f.name] = round_amount(f.name, max(total, 0.0) / f.scale, f.integer)
        yield CustomerUsage(customer, names, **record)
