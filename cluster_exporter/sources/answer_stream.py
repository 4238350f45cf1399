"""Parse a Prometheus API answer's ``data.result`` list item by item while the body arrives.

A vector answer for 100,000 namespaces is about 6 MB of JSON; read whole, decoded to text and
parsed, it costs several times that at once, for every query in flight. Here only the current
network chunk and one result item are held. The envelope around the list (status, resultType,
warnings, an engine's extra fields) is kept as text and parsed, with an empty list in place of
the items, when the body ends: the caller checks it then.

Whatever a peer sends, what is held stays bounded: every chunk is counted against the caller's
byte budgets as it arrives (``spend``), and text waiting to be parsed (one item not complete yet,
the envelope) may not grow past ``max_item_bytes``: an answer that never ends, or one endless
series, fails instead of filling memory.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterable, Callable
from typing import Any

_RESULT_LIST = re.compile(r'"result"\s*:\s*\[')
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
TRIM_AT = 1 << 16  # drop parsed text from the buffer once this much has piled up


class MalformedAnswer(ValueError):
    """The body is not a complete JSON answer (cut off, or not JSON where an item should be)."""


class TooLarge(MalformedAnswer):
    """The answer, or one element of it, is larger than a byte budget allows."""


class _Body:
    """The answer's text as it arrives: ``buf[pos:]`` is what has not been parsed yet."""

    def __init__(self, chunks: AsyncIterable[bytes], spend: Callable[[int], None], max_item_bytes: int) -> None:
        self._chunks = aiter(chunks)
        self._spend = spend
        self._max_pending = max_item_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.ended = False

    async def more(self) -> bool:
        """Append the next chunk; False when the body has ended."""
        if self.ended:
            return False
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self.buf += self._decode(b"", final=True)
            self.ended = True
            return False
        self._spend(len(chunk))
        self.buf += self._decode(chunk)
        return True

    def bounded(self) -> None:
        """Raise TooLarge when the text not parsed yet (an item or the envelope still arriving)
        is larger than one element may be."""
        if len(self.buf) - self.pos > self._max_pending:
            raise TooLarge(
                f"an element of the answer is larger than {self._max_pending} bytes (prometheus.max_item_bytes)"
            )

    def _decode(self, data: bytes, final: bool = False) -> str:
        try:
            return self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise MalformedAnswer("body is not UTF-8") from exc

    def items(self, on_item: Callable[[Any], None], first: bool) -> tuple[bool, bool]:
        """Hand over every list item complete in ``buf`` (a tight loop, no awaits: it runs once
        per item of every answer); (whether none has been seen yet, whether the list ended)."""
        buf, pos, decode, end = self.buf, self.pos, _DECODER.raw_decode, len(self.buf)
        try:
            while True:
                at = pos
                while at < end and buf[at] in _WHITESPACE:
                    at += 1
                if at == end:
                    return first, False
                char = buf[at]
                if char == "]":
                    pos = at + 1
                    return first, True
                if not first:
                    if char != ",":
                        raise MalformedAnswer(f"expected ',' or ']' in the result list, found {char!r}")
                    at += 1
                    while at < end and buf[at] in _WHITESPACE:
                        at += 1
                    if at == end:
                        return first, False
                    char = buf[at]
                if char != "{":
                    raise MalformedAnswer(f"result item is not an object (starts with {char!r})")
                try:
                    item, pos = decode(buf, at)
                except json.JSONDecodeError as exc:
                    if self.ended:
                        raise MalformedAnswer(f"bad result item: {exc.msg}") from exc
                    return first, False  # the item is not complete yet
                on_item(item)
                first = False
        finally:
            self.pos = pos  # up to the end of the last item handed over (or the closing "]")
            if pos > TRIM_AT:
                self.buf, self.pos = buf[pos:], 0


def _unlimited(_: int) -> None:
    return None


async def stream_result_items(
    chunks: AsyncIterable[bytes],
    on_item: Callable[[Any], None],
    spend: Callable[[int], None] = _unlimited,
    max_item_bytes: int = 64 * 1024 * 1024,
) -> Any:
    """Hand each element of the answer's ``data.result`` list to ``on_item`` as it is parsed.

    Returns the answer without its items (the list left empty), for the caller to check its
    status and type. An answer with no result list (an error, a scalar) is returned whole.
    ``spend(n)`` is called with every chunk's size before it is parsed (it raises to stop the
    read). Raises MalformedAnswer for a body that is not a complete JSON answer, TooLarge for an
    element (or the envelope) larger than ``max_item_bytes``.
    """
    body = _Body(chunks, spend, max_item_bytes)
    while (found := _RESULT_LIST.search(body.buf)) is None:
        body.bounded()
        if not await body.more():
            return _envelope(body.buf)
    prefix = body.buf[: found.end()]
    body.buf, body.pos = body.buf[found.end() :], 0
    first = True
    while True:
        first, ended = body.items(on_item, first)
        if ended:
            break
        if body.ended:
            raise MalformedAnswer("body ends inside the result list")
        body.bounded()
        await body.more()
    while await body.more():
        body.bounded()  # the rest of the envelope (closing braces, warnings, an engine's stats): small
    return _envelope(prefix + "]" + body.buf[body.pos :])


def _envelope(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"body is not JSON: {exc.msg}") from exc
