"""LOBSTER files: the message and orderbook CSVs of one ticker and day, read strictly.

Owns the format and nothing else: `LobsterReader` opens both files, infers or checks the
number of levels N, and yields each message with the orderbook row after it, in lockstep.
What the rows mean for a book is `replay.lobster_replay`'s business.

Invariants: every yielded message is well formed for its type and never earlier than the one
before; every row has 4 x N integer columns. What a row's levels say (non-empty ones first,
best first, strictly ordered, in range) is checked by `BookRow.shown()`, on demand. Anything
else raises `LobsterFormatError` naming the file and line. Limits: `LEVELS_MAX` levels,
`LINE_LENGTH_MAX` bytes a line, times before `TIME_S_MAX`; files are streamed, never
loaded whole.
"""

import contextlib
import operator
import os
import re
import stat
from collections.abc import Callable, Iterator
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple

import orjson

from engine.units import UNITS_MAX

LEVELS_MAX = 1_000  # LOBSTER's files go tens of levels deep; more is a wrong file
# A row is 4 x N numbers of at most 11 characters and a comma each; a message line is far
# shorter. The bound keeps a damaged file (no newlines) from being read whole into memory.
LINE_LENGTH_MAX = 4 * LEVELS_MAX * 12
ASK_EMPTY_PRICE = 9_999_999_999  # LOBSTER's price for an ask level that does not exist
BID_EMPTY_PRICE = -9_999_999_999  # and for a missing bid level; their size is 0
SIZE_MAX = UNITS_MAX  # every quantity must fit the engine's integers
ORDER_ID_MAX = 2**63 - 1  # Nasdaq order reference numbers are 64-bit
NS_PER_S = 1_000_000_000
# Time is seconds after midnight; a session may run past midnight, but not by a day.
TIME_S_MAX = 2 * 86_400
ROW_CHARACTERS = b"0123456789,-"  # all an orderbook row may hold
MESSAGE_COLUMNS = 6  # Time, Type, OrderID, Size, Price, Direction
HALT_CODES = (-1, 0, 1)  # the Price of a type 7 message: halt, quoting resumes, trading resumes
# A whole message line: ASCII digits only, with no spaces, plus signs or underscores, all
# of which int() lets through. At most 19 digits a number, as many as a 64-bit integer has:
# longer ones mean nothing here (and int() refuses thousands). Time's decimals may be none.
INTEGER = r"(-?[0-9]{1,19})"
MESSAGE_LINE = re.compile(r"([0-9]{1,19})(?:\.([0-9]*))?" + f",{INTEGER}" * (MESSAGE_COLUMNS - 1))


class MessageType(IntEnum):
    """LOBSTER's event types, numbered as in its files."""

    SUBMISSION = 1  # a new visible limit order
    CANCELLATION = 2  # part of an order's size is canceled
    DELETION = 3  # the rest of an order is canceled
    EXECUTION = 4  # a visible resting order trades
    HIDDEN_EXECUTION = 5  # a hidden resting order trades
    CROSS_TRADE = 6  # an auction (cross) trade
    HALT = 7  # trading halted or resumed, by the Price code


class Message(NamedTuple):
    """One message line; `direction` is 1 for a buy order, -1 for a sell order."""

    line: int
    time_ns: int  # nanoseconds after midnight
    kind: int  # a MessageType value
    order_id: int
    size: int
    price: int  # dollars x 10,000; for a halt, one of HALT_CODES
    direction: int


class BookRow:
    """One orderbook row as read: per side N (price, size) pairs, best first, with the empty
    levels as the file writes them. `shown()` checks the row and gives its non-empty levels;
    a row equal to a well-formed book needs no other check, so it is done only on demand."""

    __slots__ = ("_shown", "asks", "bids", "line", "path")

    def __init__(
        self, line: int, asks: list[tuple[int, int]], bids: list[tuple[int, int]], path: Path
    ) -> None:
        self.line = line
        self.asks = asks
        self.bids = bids
        self.path = path
        self._shown: tuple[list[tuple[int, int]], list[tuple[int, int]]] | None = None

    def shown(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(asks, bids): the non-empty levels, best first; raises LobsterFormatError."""
        if self._shown is None:
            asks = _side_levels(self.asks, operator.lt)
            bids = _side_levels(self.bids, operator.gt)
            if isinstance(asks, str) or isinstance(bids, str):
                side, problem = ("ask", asks) if isinstance(asks, str) else ("bid", bids)
                raise LobsterFormatError(self.path, self.line, f"{side} levels: {problem}")
            self._shown = asks, bids
        return self._shown


class LobsterFormatError(ValueError):
    """A file is missing, unreadable or not in LOBSTER's format; says which file and line."""

    def __init__(self, path: Path, line: int, detail: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {detail}")
        self.path = path
        self.line = line


class LobsterReader:
    """Both files of one ticker and day, read line by line in lockstep.

    Use as a context manager, then iterate for (message, row after it) pairs.
    """

    def __init__(self, messages: Path, orderbook: Path, levels: int | None = None) -> None:
        self.messages_path = messages
        self.orderbook_path = orderbook
        self._messages = _open(messages, pipe=True)
        try:
            self._orderbook = _open(orderbook)
            self.levels = self._infer_levels(levels)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "LobsterReader":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._messages.close()
        if hasattr(self, "_orderbook"):
            self._orderbook.close()

    def __iter__(self) -> Iterator[tuple[Message, BookRow]]:
        messages_path, orderbook_path = self.messages_path, self.orderbook_path
        read_message, read_row = self._messages.readline, self._orderbook.readline
        columns = 4 * self.levels
        last_ns = 0
        line = 0
        while True:
            line += 1
            text = _read_line(read_message, messages_path, line)
            row_text = _read_line(read_row, orderbook_path, line)
            if not text or not row_text:
                break
            message = parse_message(_ascii(text, line, messages_path), line, messages_path)
            if message.time_ns < last_ns:
                raise LobsterFormatError(messages_path, line, "time goes backwards")
            last_ns = message.time_ns
            yield message, parse_row(row_text.rstrip(b"\r\n"), line, columns, orderbook_path)
        if not text and line == 1:
            raise LobsterFormatError(messages_path, 0, "no messages")
        if row_text:
            raise LobsterFormatError(
                orderbook_path, line, f"more rows than {messages_path} has messages ({line - 1})"
            )
        if text:
            raise LobsterFormatError(
                messages_path, line, f"more messages than {orderbook_path} has rows ({line - 1})"
            )

    def _infer_levels(self, levels: int | None) -> int:
        """N from the first row's column count; it must agree with `levels` when given."""
        path = self.orderbook_path
        first = _read_line(self._orderbook.readline, path, 1)
        if not first:
            raise LobsterFormatError(path, 0, "no rows")
        self._orderbook.seek(0)
        columns = first.rstrip(b"\r\n").count(b",") + 1
        if columns % 4 or columns // 4 > LEVELS_MAX:
            raise LobsterFormatError(
                path, 1, f"{columns} columns: not 4 per level for 1..{LEVELS_MAX} levels"
            )
        if levels is not None and levels != columns // 4:
            raise LobsterFormatError(
                path, 1, f"{columns} columns are {columns // 4} levels, not the {levels} asked for"
            )
        return columns // 4


def parse_message(text: str, line: int, path: Path) -> Message:
    """One message line, checked for its type; raises LobsterFormatError."""
    match = MESSAGE_LINE.fullmatch(text)
    if match is None:
        raise LobsterFormatError(path, line, _line_problem(text))
    whole, fraction, kind, order_id, size, price, direction = match.groups()
    seconds = int(whole)
    if seconds >= TIME_S_MAX:
        raise LobsterFormatError(
            path, line, f"time {seconds} is not before {TIME_S_MAX} s after midnight"
        )
    # Digits past the ninth decimal are dropped rather than refused: files re-saved through
    # floats carry noise there, and the exchange's clock is no finer than a nanosecond.
    time_ns = seconds * NS_PER_S + (int(fraction[:9].ljust(9, "0")) if fraction else 0)
    message = Message(
        line, time_ns, int(kind), int(order_id), int(size), int(price), int(direction)
    )
    problem = _message_problem(message)
    if problem is not None:
        raise LobsterFormatError(path, line, problem)
    return message


def _line_problem(text: str) -> str:
    """What is wrong with a message line that is not digits in the right places."""
    fields = text.split(",")
    if len(fields) != MESSAGE_COLUMNS:
        return f"{len(fields)} columns, a message has {MESSAGE_COLUMNS}"
    if not all(re.fullmatch(INTEGER, field) for field in fields[1:]):
        return f"not an integer in {text!r}"
    return f"time {fields[0]!r} is not seconds after midnight"


def _message_problem(message: Message) -> str | None:
    _, _, kind, order_id, size, price, direction = message
    if not 1 <= kind <= 7:
        return f"unknown message type {kind}"
    if direction != 1 and direction != -1:
        return f"direction {direction} is neither 1 (buy) nor -1 (sell)"
    if not 0 <= order_id <= ORDER_ID_MAX:
        return f"order id {order_id} is out of range"
    if kind == MessageType.HALT:
        return None if price in HALT_CODES else f"halt code {price} is not -1, 0 or 1"
    if not (0 < size <= SIZE_MAX and 0 < price < ASK_EMPTY_PRICE):  # types 1 to 6
        return f"size {size} and price {price} must be positive and in range"
    return None


def parse_row(data: bytes, line: int, columns: int, path: Path) -> BookRow:
    """One orderbook row of `columns` integers; raises LobsterFormatError. What the levels
    say is checked by `BookRow.shown()`.

    A row is a JSON array without its brackets, and orjson reads one several times faster
    than `int()` per column; first, anything but digits, commas and minus signs is refused,
    so what it reads can only be integers (or, past 64 bits, floats that `shown()` refuses).
    """
    found = data.count(b",") + 1
    if found != columns:
        raise LobsterFormatError(path, line, f"{found} columns, expected {columns}")
    values = None
    if not data.translate(None, ROW_CHARACTERS):
        # orjson still refuses an empty column, a stray minus sign or a leading zero
        with contextlib.suppress(orjson.JSONDecodeError):
            values = orjson.loads(b"[" + data + b"]")
    if values is None:
        raise LobsterFormatError(path, line, f"not a row of integers: {data[:80]!r}")
    asks = list(zip(values[0::4], values[1::4], strict=True))
    bids = list(zip(values[2::4], values[3::4], strict=True))
    return BookRow(line, asks, bids, path)


def _side_levels(
    levels: list[tuple[int, int]], better: Callable[[int, int], bool]
) -> list[tuple[int, int]] | str:
    """The non-empty levels of one side, or what is wrong with them. `better(a, b)` says
    price a is better than price b on this side. Builtins only: mid-run rows all come here."""
    prices, sizes = zip(*levels, strict=True)
    count = sizes.index(0) if 0 in sizes else len(sizes)
    if any(sizes[count:]):
        return "a level follows an empty one"
    if count:
        shown = prices[:count]
        if not (min(sizes[:count]) > 0 and max(sizes[:count]) <= SIZE_MAX):
            return "a size out of range"
        if not (min(shown) > 0 and max(shown) < ASK_EMPTY_PRICE):
            return "a price out of range"
        if not all(map(better, shown, shown[1:])):
            return "prices not strictly ordered best first"
    return levels[:count]


def _open(path: Path, *, pipe: bool = False) -> IO[bytes]:
    """Binary, so that a decoding error is found on its own line, not a chunk ahead. Opened
    without blocking and refused unless a regular file, or a pipe where one may be read
    (`pipe`: the messages, read once, `--messages <(zcat M.csv.gz)`): a named pipe with no
    writer blocked the open for ever without a word (session 32's sweep); read, it ends at
    once, with no messages."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise LobsterFormatError(path, 0, error.strerror or "cannot be opened") from None
    try:
        _check_kind(path, descriptor, pipe=pipe)
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:  # not handed on: closed here (it leaked when fstat raised)
        os.close(descriptor)
        raise


def _check_kind(path: Path, descriptor: int, *, pipe: bool) -> None:
    """Refuse what `_open` may not read: a directory, a device, a pipe unless `pipe` (the
    order book: its first row is read twice, for the levels)."""
    try:
        mode = os.fstat(descriptor).st_mode
    except OSError as error:
        raise LobsterFormatError(path, 0, error.strerror or "cannot be read") from None
    if stat.S_ISREG(mode) or (pipe and stat.S_ISFIFO(mode)):
        return
    if stat.S_ISDIR(mode):
        what = "a directory"
    elif stat.S_ISFIFO(mode):
        what = "a pipe (the order book's first row is read twice, for its levels)"
    else:
        what = "a device"
    raise LobsterFormatError(path, 0, f"{what}, not a file: give the LOBSTER file")


def _ascii(data: bytes, line: int, path: Path) -> str:
    try:
        return data.rstrip(b"\r\n").decode("ascii")
    except UnicodeDecodeError:
        raise LobsterFormatError(path, line, "not ASCII text") from None


def _read_line(readline: Callable[[int], bytes], path: Path, line: int) -> bytes:
    """The next line with its line ending, or b"" at the end of the file."""
    try:
        text = readline(LINE_LENGTH_MAX + 1)
    except OSError as error:
        raise LobsterFormatError(path, line, error.strerror or "cannot be read") from None
    if len(text) > LINE_LENGTH_MAX:
        raise LobsterFormatError(path, line, f"longer than {LINE_LENGTH_MAX} characters")
    return text
