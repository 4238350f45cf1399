"""answer_stream: result items handed over one by one, whatever the chunking, and bad bodies caught."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cluster_exporter.sources.answer_stream import MalformedAnswer, stream_result_items

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


def _run(body: bytes, size: int) -> tuple[list[Any], Any]:
    got: list[Any] = []
    envelope = asyncio.run(stream_result_items(_chunks(body, size), got.append))
    return got, envelope


@pytest.mark.parametrize("body", [BODY, COMPACT], ids=["spaced", "compact"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 10**6])
def test_items_arrive_whole_and_in_order_whatever_the_chunk_size(size: int, body: bytes) -> None:
    got, envelope = _run(body, size)
    assert got == ITEMS
    assert envelope == {"status": "success", "data": {"resultType": "vector", "result": []}}


def test_the_envelope_after_the_list_is_kept_for_the_caller() -> None:
    body = b'{"status":"success","isPartial":false,"data":{"resultType":"vector","result":[]},"warnings":["partial"]}'
    got, envelope = _run(body, 5)
    assert got == [] and envelope["warnings"] == ["partial"] and envelope["isPartial"] is False


def test_an_answer_without_a_result_list_is_returned_whole() -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"parse error"}'
    assert _run(body, 4) == ([], json.loads(body))


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
def test_bodies_that_are_not_complete_answers_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedAnswer):
        _run(body, 16)
