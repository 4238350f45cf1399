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

Two ways to parse the items. The general one decodes the text item by item with the standard
library's JSON decoder. The fast one (``fast``, a typed decoder such as msgspec's) takes every
item complete in the bytes received so far at once: it cuts the bytes after the last ``}`` that
is followed by ``,{`` or ``]`` (or by the end of what has arrived) and decodes ``[`` +
those bytes + ``]`` as one list. A cut inside a string (a label value holding ``},{``) cannot
decode as a list: the text after it would still be inside the string; neither can a cut inside
an item. So a run that decodes is exactly the complete items, and a run that does not (a false
cut, an item the typed decoder does not take, bytes that are not UTF-8) goes to the general
parser, which finds the fault or takes the items received so far, as before; the fast path takes
over again with the next chunk.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterable, Callable
from typing import Any

_RESULT_LIST = re.compile(r'"result"\s*:\s*\[')
_RESULT_LIST_BYTES = re.compile(rb'"result"\s*:\s*\[')
_SPACE = re.compile(rb"[ \t\n\r]*")
# an item's last byte, if outside a string: "}" then "]", or "," and the next item's "{"; or "}" at
# the end of what has arrived (so that an answer cut off after an item has handed that item over),
# taken only where no sure end is found
_ITEM_END = re.compile(rb"\}[ \t\n\r]*(?:\]|,[ \t\n\r]*\{)")
_ITEM_END_SO_FAR = re.compile(rb"\}[ \t\n\r]*(?:,[ \t\n\r]*)?\Z")
_LOOKAHEAD = 256  # bytes before the end searched again for a cut once a search found none
# A run is cut within its first RUN_BYTES where an item ends there: its objects (several times its
# bytes) then stay small however much the network has delivered at once.
RUN_BYTES = 64 * 1024
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
TRIM_AT = 1 << 16  # drop parsed text from the buffer once this much has piled up


class MalformedAnswer(ValueError):
    """The body is not a complete JSON answer (cut off, or not JSON where an item should be)."""


class TooLarge(MalformedAnswer):
    """The answer, or one element of it, is larger than a byte budget allows."""


Decode = Callable[[bytes], list[Any]]  # a JSON list of items -> the items; raises on anything it does not take


class _Body:
    """The answer as it arrives: ``buf[pos:]`` is the text not parsed yet; on the fast path
    (``text`` False) the bytes ``raw[rpos:]`` are, and ``buf`` is empty."""

    def __init__(
        self, chunks: AsyncIterable[bytes], spend: Callable[[int], None], max_item_bytes: int, text: bool = True
    ) -> None:
        self._chunks = aiter(chunks)
        self._spend = spend
        self._max_pending = max_item_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.ended = False
        self.text = text
        self.raw = b""
        self.rpos = 0
        self._searched = 0  # raw[:_searched] holds no cut after rpos (searched before)

    async def more(self) -> bool:
        """Append the next chunk; False when the body has ended."""
        if self.ended:
            return False
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            if self.text:
                self.buf += self._decode(b"", final=True)
            self.ended = True
            return False
        self._spend(len(chunk))
        if self.text:
            self.buf += self._decode(chunk)
        else:
            self.raw += chunk
        return True

    def bounded(self) -> None:
        """Raise TooLarge when the text not parsed yet (an item or the envelope still arriving)
        is larger than one element may be."""
        if len(self.buf) - self.pos + len(self.raw) - self.rpos > self._max_pending:
            raise TooLarge(
                f"an element of the answer is larger than {self._max_pending} bytes (prometheus.max_item_bytes)"
            )

    def _decode(self, data: bytes, final: bool = False) -> str:
        try:
            return self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise MalformedAnswer("body is not UTF-8") from exc

    def to_text(self) -> None:
        """Leave the fast path: the bytes not parsed yet become the general parser's text."""
        self.buf, self.pos = self._decode(self.raw[self.rpos :], final=self.ended), 0
        self.raw, self.rpos, self.text = b"", 0, True

    def to_bytes(self) -> None:
        """Back to the fast path: the text not parsed yet (less than one item) becomes bytes again,
        with any bytes of a character not complete yet."""
        pending, _ = self._utf8.getstate()
        self.raw, self.rpos = self.buf[self.pos :].encode() + pending, 0
        self.buf, self.pos, self.text, self._searched = "", 0, False, 0
        self._utf8.reset()

    def runs(self, decode: Decode, on_item: Callable[[Any], None], first: bool) -> tuple[bool, bool | None]:
        """The fast path: hand over every item complete in ``raw``, a run at a time; as ``items``,
        with None for "ended" when a run did not decode (the body is text now, for ``items``)."""
        raw, pos, end = self.raw, self.rpos, len(self.raw)
        try:
            while True:
                at = _SPACE.match(raw, pos).end()  # type: ignore[union-attr]  # always matches
                if at == end:
                    return first, False
                char = raw[at]
                if char == 0x5D:  # "]"
                    pos = at + 1
                    return first, True
                if not first:
                    if char != 0x2C:  # ","
                        raise MalformedAnswer(f"expected ',' or ']' in the result list, found {chr(char)!r}")
                    at = _SPACE.match(raw, at + 1).end()  # type: ignore[union-attr]
                    if at == end:
                        return first, False
                    char = raw[at]
                if char != 0x7B:  # "{"
                    raise MalformedAnswer(f"result item is not an object (starts with {chr(char)!r})")
                cut = self._cut(raw, at, end)
                if cut < 0:
                    return first, False
                try:
                    items = decode(b"[" + raw[at:cut] + b"]")
                except Exception:  # a false cut or an item it does not take: the general parser decides
                    self.rpos = pos
                    self.to_text()
                    return first, None
                for item in items:
                    on_item(item)
                first, pos = False, cut
        finally:
            if self.text is False:
                self.raw, self.rpos = raw[pos:], 0  # what is left: less than one item
                self._searched = max(0, self._searched - pos)

    def _cut(self, raw: bytes, at: int, end: int) -> int:
        """Just past the last ``}`` in the first RUN_BYTES after ``at`` that is followed by ``,{``
        or ``]``; past them, the first such ``}``; else a ``}`` that ends what has arrived; -1 if none."""
        low, limit = max(at, self._searched), min(end, at + RUN_BYTES)
        i = limit
        while (i := raw.rfind(b"}", low, i)) >= 0:
            if _ITEM_END.match(raw, i):
                self._searched = 0
                return i + 1
        i = max(low, limit) - 1  # a first item longer than RUN_BYTES: where it ends, if it has
        while (i := raw.find(b"}", i + 1, end)) >= 0:
            if _ITEM_END.match(raw, i):
                self._searched = 0
                return i + 1
        self._searched = max(at, end - _LOOKAHEAD)  # a cut's lookahead may still arrive in the last bytes
        last = raw.rfind(b"}", at, end)
        return last + 1 if last >= 0 and _ITEM_END_SO_FAR.match(raw, last) else -1

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
    fast: Decode | None = None,
) -> Any:
    """Hand each element of the answer's ``data.result`` list to ``on_item`` as it is parsed.

    Returns the answer without its items (the list left empty), for the caller to check its
    status and type. An answer with no result list (an error, a scalar) is returned whole.
    ``spend(n)`` is called with every chunk's size before it is parsed (it raises to stop the
    read). Raises MalformedAnswer for a body that is not a complete JSON answer, TooLarge for an
    element (or the envelope) larger than ``max_item_bytes``.

    With ``fast``, runs of complete items are decoded by it and its items handed over; where it
    raises, the general parser takes what has arrived, so ``on_item`` must take the items of both
    (the standard library's dicts and lists, and what ``fast`` returns).
    """
    body = _Body(chunks, spend, max_item_bytes, text=fast is None)
    prefix = await _up_to_list(body)
    if prefix is None:
        return _envelope(body.buf if body.text else _utf8(body.raw))
    first = True
    while True:
        if not body.text:
            assert fast is not None
            first, done = body.runs(fast, on_item, first)
            if done is None:
                continue  # the general parser takes what has arrived
            ended = done
        else:
            first, ended = body.items(on_item, first)
        if ended:
            break
        if body.ended:
            if not body.text:
                body.to_text()  # the general parser has the last word on an answer that ends oddly
                continue
            raise MalformedAnswer("body ends inside the result list")
        if fast is not None and body.text:
            body.to_bytes()  # back to the fast path for what arrives next
        body.bounded()
        await body.more()
    while await body.more():
        body.bounded()  # the rest of the envelope (closing braces, warnings, an engine's stats): small
    rest = body.buf[body.pos :] if body.text else _utf8(body.raw[body.rpos :])
    return _envelope(prefix + "]" + rest)


async def _up_to_list(body: _Body) -> str | None:
    """Read up to the result list's ``[``, drop it from the body; the envelope before it, or
    None when the body ends without one."""
    while True:
        found = _RESULT_LIST.search(body.buf) if body.text else _RESULT_LIST_BYTES.search(body.raw)
        if found is not None:
            break
        body.bounded()
        if not await body.more():
            return None
    end = found.end()
    if body.text:
        prefix, body.buf, body.pos = body.buf[:end], body.buf[end:], 0
        return prefix
    prefix_bytes, body.raw, body.rpos = body.raw[:end], body.raw[end:], 0
    return _utf8(prefix_bytes)


def _utf8(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise MalformedAnswer("body is not UTF-8") from exc


def _envelope(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"body is not JSON: {exc.msg}") from exc
