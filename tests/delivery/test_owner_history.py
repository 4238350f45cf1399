"""OwnerHistory, pure: the owners a window is billed with, relabels inside windows, pruning, the stored form."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta

import pytest

from cluster_exporter.delivery.owner_history import OwnerHistory, OwnerHistoryError
from cluster_exporter.delivery.service import recording
from cluster_exporter.errors import KubernetesError
from cluster_exporter.settings import KubernetesSettings

DAY = datetime(2025, 11, 20, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)
A = {"shop": "cust_a", "blog": "cust_c"}
B = {"shop": "cust_b", "blog": "cust_c"}
CONFIGMAP_BUDGET = 900_000  # delivery.configmap_max_bytes


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + hour * H + minute * M


def history(*observations: tuple[datetime, dict[str, str]]) -> OwnerHistory:
    made = OwnerHistory()
    for moment, owners in observations:
        made.observe(moment, owners)
    return made


def test_no_history_bills_with_the_live_owners() -> None:
    assert OwnerHistory().for_window(at(1), at(2), B) == B


def test_quiet_cycles_make_one_run() -> None:
    h = history(*[(at(hour, 7), A) for hour in range(1, 6)])
    assert h.runs == [(int(at(1, 7).timestamp()), int(at(5, 7).timestamp()))]
    assert h.changes == []


# Owners seen at 01:07 (cust_a), the exporter down, then at 09:07 (cust_b): the change is placed
# halfway, at 05:07. (window start hour, expected owner of shop)
DOWNTIME = [(0, "cust_a"), (1, "cust_a"), (3, "cust_a"), (4, "cust_a"), (5, "cust_b"), (8, "cust_b"), (9, "cust_b")]


@pytest.mark.parametrize(("hour", "owner"), DOWNTIME)
def test_backlog_window_is_billed_with_the_owners_seen_closest_to_its_end(hour: int, owner: str) -> None:
    h = history((at(1, 7), A), (at(9, 7), B))
    owners = h.for_window(at(hour), at(hour + 1), B)
    assert owners["shop"] == owner and owners["blog"] == "cust_c"


def test_on_time_windows_keep_the_owner_at_measurement_time() -> None:
    # a cycle a few minutes after each window's end: a relabel at 02:30 is seen at 03:07, and the
    # window 02:00-03:00 measured then is billed to the new owner, as without history
    h = history((at(1, 7), A), (at(2, 7), A), (at(3, 7), B))
    assert h.for_window(at(2), at(3), B)["shop"] == "cust_b"
    assert h.for_window(at(1), at(2), B)["shop"] == "cust_a"
    assert h.changed_inside(at(2), at(3)) == {"shop": ("cust_a", "cust_b", at(2, 7), at(3, 7))}
    assert h.changed_inside(at(1), at(2)) == {}
    assert h.changed_inside(at(3), at(4)) == {}


def test_the_window_holding_the_halfway_point_is_the_one_billed_wholly_to_the_new_owner() -> None:
    h = history((at(1, 7), A), (at(9, 7), B))
    flagged = [hour for hour in range(0, 10) if h.changed_inside(at(hour), at(hour + 1))]
    assert flagged == [5]  # 05:07 is in 05:00-06:00, the first window billed to cust_b (see DOWNTIME)
    assert h.changed_inside(at(5), at(6)) == {"shop": ("cust_a", "cust_b", at(1, 7), at(9, 7))}


def test_namespaces_the_history_does_not_list_keep_their_live_owner() -> None:
    h = history((at(1, 7), A), (at(9, 7), {**B, "new": "cust_n"}))
    live = {**B, "new": "cust_n", "newer": "cust_m"}  # "newer" created after the last observation
    assert h.for_window(at(1), at(2), live) == {**A, "new": "cust_n", "newer": "cust_m"}


def test_a_namespace_deleted_since_is_billed_to_its_recorded_owner() -> None:
    h = history((at(1, 7), A), (at(9, 7), {"blog": "cust_c"}))
    assert h.for_window(at(1), at(2), {"blog": "cust_c"}) == A
    assert h.changed_inside(at(0), at(12)) == {}  # a deletion is not a change of owner


def test_pruning_keeps_what_later_windows_need() -> None:
    h = history((at(1, 7), A), (at(2, 7), B), (at(3, 7), A), (at(4, 7), B))
    h.prune(at(3, 30))  # the next window to build ends at 03:30: the run seen at 03:07 is its neighbour
    assert [first for first, _ in h.runs] == [int(at(hour, 7).timestamp()) for hour in (3, 4)]
    assert len(h.changes) == 1
    assert h.for_window(at(2, 30), at(3, 30), B)["shop"] == "cust_a"  # 03:07 is nearest its end
    assert h.for_window(at(3), at(4), B)["shop"] == "cust_b"  # 04:07 is
    h.prune(at(1))  # never forgets what it still needs
    assert len(h.runs) == 2


def test_pack_round_trip() -> None:
    h = history((at(1, 7), A), (at(2, 7), A), (at(9, 7), {**B, "new": "cust_n"}))
    again = OwnerHistory.unpack(h.pack())
    assert (again.current, again.runs, again.changes) == (h.current, h.runs, h.changes)
    assert again.for_window(at(1), at(2), B) == h.for_window(at(1), at(2), B)
    with pytest.raises(OwnerHistoryError, match="unreadable"):
        OwnerHistory.unpack(b"not xz")


def _random_names(count: int, customers: int, seed: int = 7) -> dict[str, str]:
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))) for _ in range(3000)]
    owners = [f"{rng.choice(words)}-{rng.choice(words)}" for _ in range(customers)]
    envs = ["prod", "dev", "staging", "ci", "test"]
    out: dict[str, str] = {}
    while len(out) < count:
        suffix = "".join(rng.choices(string.ascii_lowercase + string.digits, k=5))
        out[f"{rng.choice(words)}-{rng.choice(envs)}-{suffix}"] = rng.choice(owners)
    return out


def test_100k_namespaces_fit_the_configmap_with_room_for_the_spool() -> None:
    owners = {f"tenant-{i:05d}": f"cust-{i:05d}" for i in range(1, 100_001)}
    moved = {**owners, **{f"tenant-{i:05d}": f"cust-{i + 1:05d}" for i in range(1, 1001)}}  # 1,000 relabels
    h = history((at(1, 7), owners), (at(2, 7), owners), (at(3, 7), moved))
    size = len(h.pack())
    assert size < CONFIGMAP_BUDGET // 5, size  # about 50 kB
    assert OwnerHistory.unpack(h.pack()).current == moved


def test_100k_random_namespace_names_are_measured() -> None:
    """Random names carry their entropy: some 5 bytes a namespace whatever the compression; at
    100,000 namespaces and 20,000 customers the history needs about 790 kB, more than a ConfigMap
    has room for next to the spool (the ConfigMap store then leaves it out, see state_configmap)."""
    size = len(history((at(1, 7), _random_names(100_000, 20_000))).pack())
    assert 600_000 < size < 1_300_000, size
    assert len(history((at(1, 7), _random_names(20_000, 4_000))).pack()) < CONFIGMAP_BUDGET // 4


async def test_a_failed_discovery_records_nothing() -> None:
    async def down(kubernetes: KubernetesSettings) -> dict[str, str]:
        raise KubernetesError("list namespaces: connection refused")

    async def up(kubernetes: KubernetesSettings) -> dict[str, str]:
        return dict(A)

    h = OwnerHistory()
    with pytest.raises(KubernetesError):
        await recording(down, h, at(1, 7))(KubernetesSettings())
    assert not h  # never an empty owner map
    assert await recording(up, h, at(2, 7))(KubernetesSettings()) == A
    assert h.current == A and h.runs == [(int(at(2, 7).timestamp()),) * 2]
