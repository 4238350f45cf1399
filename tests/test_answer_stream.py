"""answer_stream: result items handed over one by one, whatever the chunking, and bad bodies caught."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster_exporter.sources.answer_stream import Decode, MalformedAnswer, stream_result_items

ITEMS = [
    {
        "metric": {"namespace": f"ns-{i}", "note": 'quote " brace } bracket ] comma , "result":[ },{"metric":'},
        "value": [1, str(i)],
    }
    for i in range(40)
]
ANSWER = {"status": "success", "data": {"resultType": "vector", "result": ITEMS}}
BODY = json.dumps(ANSWER, indent=1).encode()
COMPACT = json.dumps(ANSWER, separators=(",", ":")).encode()  # as Prometheus writes


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


# the general parser alone, and the fast path with a decoder that takes any JSON (so that every
# item the fast path hands over can be compared with the general parser's)
DECODERS = [None, msgspec.json.decode]
DECODER_IDS = ["general", "fast"]


def _run(body: bytes, size: int, fast: Decode | None = None) -> tuple[list[Any], Any]:
    got: list[Any] = []
    envelope = asyncio.run(stream_result_items(_chunks(body, size), got.append, fast=fast))
    return got, envelope


@pytest.mark.parametrize("fast", DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize("body", [BODY, COMPACT], ids=["spaced", "compact"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 10**6])
def test_items_arrive_whole_and_in_order_whatever_the_chunk_size(size: int, body: bytes, fast: Decode | None) -> None:
    got, envelope = _run(body, size, fast)
    assert got == ITEMS
    assert envelope == {"status": "success", "data": {"resultType": "vector", "result": []}}


@pytest.mark.parametrize("fast", DECODERS, ids=DECODER_IDS)
def test_the_envelope_after_the_list_is_kept_for_the_caller(fast: Decode | None) -> None:
    body = b'{"status":"success","isPartial":false,"data":{"resultType":"vector","result":[]},"warnings":["partial"]}'
    got, envelope = _run(body, 5, fast)
    assert got == [] and envelope["warnings"] == ["partial"] and envelope["isPartial"] is False


@pytest.mark.parametrize("fast", DECODERS, ids=DECODER_IDS)
def test_an_answer_without_a_result_list_is_returned_whole(fast: Decode | None) -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"parse error"}'
    assert _run(body, 4, fast) == ([], json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        BODY[: len(BODY) // 2],  # cut off inside the list
        COMPACT[: len(COMPACT) // 2],
        b'{"status":"success","data":{"result":[{"metric":{}},{"metric":{},]}},{"metric":{}}]}}',  # bad run
        BODY[:-3],  # cut off in the envelope after it
        b'{"status":"success","data":{"result":[{"a":1} {"b":2}]}}',  # no comma
        b'{"status":"success","data":{"result":[1,2]}}',  # items are not objects
        b'{"status":"success","data":{"result":[{"a":1},]}}',  # trailing comma
        b'{"status":"success","data":{"result":[{"a":\xff}]}}',  # not UTF-8
    ],
)
@pytest.mark.parametrize("fast", DECODERS, ids=DECODER_IDS)
def test_bodies_that_are_not_complete_answers_are_refused(body: bytes, fast: Decode | None) -> None:
    with pytest.raises(MalformedAnswer):
        _run(body, 16, fast)


async def _parts(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


SERIES_START = b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":['
LIST_DONE = b'{"status":"success","data":{"resultType":"vector","result":[]},"x":"'


@pytest.mark.parametrize(
    "parts",
    [
        [SERIES_START] + [b'[1,"1"],' * 400] * 50,  # one series whose samples never end
        [LIST_DONE] + [b"y" * 4096] * 50,  # a complete list, then an envelope that never ends
        [b'{"status":"success","data":' + b" " * 4096] + [b" " * 4096] * 50,  # no result list, and no end
    ],
    ids=["endless-series", "endless-envelope", "no-list"],
)
@pytest.mark.parametrize("fast", DECODERS, ids=DECODER_IDS)
async def test_an_element_larger_than_its_budget_stops_the_read(parts: list[bytes], fast: Decode | None) -> None:
    from cluster_exporter.sources.answer_stream import TooLarge, stream_result_items

    read: list[int] = []
    with pytest.raises(TooLarge, match=r"prometheus\.max_item_bytes"):
        await stream_result_items(_parts(*parts), lambda item: None, read.append, max_item_bytes=64 * 1024, fast=fast)
    assert sum(read) < 64 * 1024 + 2 * 4096 * 4, "stopped within a chunk or two of the limit"


@pytest.mark.parametrize("fast", DECODERS, ids=DECODER_IDS)
async def test_every_chunk_is_counted_before_it_is_parsed(fast: Decode | None) -> None:
    from cluster_exporter.sources.answer_stream import stream_result_items

    class Stop(Exception):
        pass

    spent = 0

    def spend(n: int) -> None:
        nonlocal spent
        spent += n
        if spent > 100:
            raise Stop

    items: list[object] = []
    body = [b'{"status":"success","data":{"resultType":"vector","result":[', b'{"a":1},' * 10, b'{"a":2}]}}']
    with pytest.raises(Stop):
        await stream_result_items(_parts(*body), items.append, spend, fast=fast)
    assert items == [], "the chunk over budget was not parsed"


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.dictionaries(st.text(max_size=10), JSON, max_size=4), max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30),
    indent=st.sampled_from([None, 0, 2]),
    extra=st.dictionaries(st.sampled_from(["warnings", "stats", "infos"]), JSON, max_size=2),
    fast=st.sampled_from(DECODERS),
)
def test_any_answer_cut_anywhere_streams_its_items_whole(
    items: list[dict[str, Any]], cuts: list[int], indent: int | None, extra: dict[str, Any], fast: Decode | None
) -> None:
    """Property: whatever the items (strings with brackets, quotes and escapes, nesting), however
    the body is cut into chunks and laid out, every item arrives once, whole and in order, and the
    envelope comes back with an empty list."""
    answer = {"status": "success", "data": {"resultType": "vector", "result": items}, **extra}
    body = json.dumps(answer, indent=indent).encode()
    parts, at = [], 0
    for cut in itertools.cycle(cuts):
        if at >= len(body):
            break
        parts.append(body[at : at + cut])
        at += cut
    got: list[Any] = []
    envelope = asyncio.run(stream_result_items(_parts(*parts), got.append, fast=fast))
    assert got == items
    assert envelope == {**answer, "data": {"resultType": "vector", "result": []}}


class _Item(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, str]


_TYPED = msgspec.json.Decoder(list[_Item]).decode


@pytest.mark.parametrize("size", [1, 7, 64, 4096])
def test_a_typed_decoder_takes_the_runs_and_the_general_parser_what_it_refuses(size: int) -> None:
    """Runs the typed decoder takes arrive as its objects; the items of a chunk holding one it
    refuses (a label value that is a number), or a false cut (a label value holding
    ``},{"metric":``), arrive from the general parser as dicts. Either way every item arrives once,
    whole and in order, and the fast path takes over again after such a chunk."""
    good = [{"metric": {"ns": f"a{i}", "note": '},{"metric":{'}, "value": [1, str(i)]} for i in range(300)]
    odd = {"metric": {"ns": 7}, "value": [1, "7"]}
    answer = {"status": "success", "data": {"resultType": "vector", "result": [*good, odd, *good]}}
    got, envelope = _run(json.dumps(answer, separators=(",", ":")).encode(), size, _TYPED)
    plain = [g if isinstance(g, dict) else {"metric": g.metric, "value": list(g.value)} for g in got]
    assert plain == answer["data"]["result"]  # type: ignore[index]
    assert any(isinstance(g, dict) for g in got)
    if size >= 64:  # in tinier chunks an item's false cut often arrives before its end: all dicts
        assert any(isinstance(g, _Item) for g in got)
    assert envelope["data"]["result"] == []


@pytest.mark.parametrize("size", [50, 333, 10**6])
def test_runs_are_cut_short_and_an_item_longer_than_a_run_still_arrives(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """A run is cut within RUN_BYTES where an item ends there (what the network delivered at
    once is decoded in parts); an item longer than RUN_BYTES is decoded whole."""
    from cluster_exporter.sources import answer_stream

    monkeypatch.setattr(answer_stream, "RUN_BYTES", 200)
    items = [{"metric": {"ns": "x" * (10 if i % 7 else 500)}, "value": [1, str(i)]} for i in range(60)]
    answer = {"status": "success", "data": {"resultType": "vector", "result": items}}
    runs: list[int] = []

    def decode(run: bytes) -> list[Any]:
        runs.append(len(run))
        return list(msgspec.json.decode(run))

    got, _ = _run(json.dumps(answer, separators=(",", ":")).encode(), size, decode)
    assert got == items
    if size > 1000:
        assert max(runs) > 500 and sorted(runs)[len(runs) // 2] <= 202, "short runs, and the long items whole"


@pytest.mark.parametrize("size", [64, 10**6])
def test_a_refused_run_after_runs_taken_in_the_same_chunk_goes_on_in_order(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Runs taken, then one the decoder refuses, from one chunk: the general parser goes on from
    the separator after the last item taken (not as if the list had just begun)."""
    from cluster_exporter.sources import answer_stream

    monkeypatch.setattr(answer_stream, "RUN_BYTES", 100)
    items = [{"metric": {"ns": f"n{i}"}, "value": [1, str(i)]} for i in range(30)]
    answer = {"status": "success", "data": {"resultType": "vector", "result": items}}

    def picky(run: bytes) -> list[Any]:
        if b'"17"' in run:
            raise ValueError("refused")
        return list(msgspec.json.decode(run))

    got, envelope = _run(json.dumps(answer, separators=(",", ":")).encode(), size, picky)
    assert got == items and envelope["data"]["result"] == []
