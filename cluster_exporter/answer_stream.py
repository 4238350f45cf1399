"""Parse a Prometheus API answer's ``data.result`` list item by item while the body arrives.

A vector answer for 100,000 namespaces is about 6 MB of JSON; read whole, decoded to text and
parsed, it costs several times that at once, for every query in flight. Here only the current
network chunk and one result item are held. The envelope around the list (status, resultType,
warnings, an engine's extra fields) is kept as text and parsed, with an empty list in place of
the items, when the body ends: the caller checks it then.
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


class _Body:
    """The answer's text as it arrives: ``buf[pos:]`` is what has not been parsed yet."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = aiter(chunks)
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
        self.buf += self._decode(chunk)
        return True

    def _decode(self, data: bytes, final: bool = False) -> str:
        try:
            return self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise MalformedAnswer("body is not UTF-8") from exc

    async def next_char(self) -> str:
        """The next non-blank character (not consumed), waiting for more of the body if needed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not await self.more():
                raise MalformedAnswer("body ends inside the result list")

    async def item(self) -> Any:
        """The JSON object starting at ``pos``, waiting for its end if it has not arrived yet."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if await self.more():
                    continue  # the item is not complete yet
                raise MalformedAnswer(f"bad result item: {exc.msg}") from exc
            self.pos = end
            if self.pos > TRIM_AT:
                self.buf, self.pos = self.buf[self.pos :], 0
            return value


async def stream_result_items(chunks: AsyncIterable[bytes], on_item: Callable[[Any], None]) -> Any:
    """Hand each element of the answer's ``data.result`` list to ``on_item`` as it is parsed.

    Returns the answer without its items (the list left empty), for the caller to check its
    status and type. An answer with no result list (an error, a scalar) is returned whole.
    Raises MalformedAnswer for a body that is not a complete JSON answer.
    """
    body = _Body(chunks)
    while (found := _RESULT_LIST.search(body.buf)) is None:
        if not await body.more():
            return _envelope(body.buf)
    prefix = body.buf[: found.end()]
    body.buf, body.pos = body.buf[found.end() :], 0
    first = True
    while True:
        char = await body.next_char()
        if char == "]":
            body.pos += 1
            break
        if not first:
            if char != ",":
                raise MalformedAnswer(f"expected ',' or ']' in the result list, found {char!r}")
            body.pos += 1
            char = await body.next_char()
        if char != "{":
            raise MalformedAnswer(f"result item is not an object (starts with {char!r})")
        on_item(await body.item())
        first = False
    while await body.more():
        pass  # the rest of the envelope (closing braces, warnings, an engine's stats): small
    return _envelope(prefix + "]" + body.buf[body.pos :])


def _envelope(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"body is not JSON: {exc.msg}") from exc
