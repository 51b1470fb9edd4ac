"""Reading LOBSTER files: lockstep pairs, levels inferred or checked, every bad input named."""

import errno
import os
import threading
from pathlib import Path

import pytest

from replay.lobster_format import (
    LINE_LENGTH_MAX,
    BookRow,
    LobsterFormatError,
    LobsterReader,
    Message,
    MessageType,
    parse_row,
)
from tests.replay.conftest import TEST_MESSAGES, TEST_ORDERBOOK

ROW = "1000100,100,999900,100,1000200,50,999800,70"  # two levels a side
MESSAGE = "34200.1,1,5,100,1000100,-1"


def read_all(messages: Path, orderbook: Path, levels: int | None = None) -> list[object]:
    with LobsterReader(messages, orderbook, levels) as reader:
        return [pair for message, row in reader for pair in (message, row.shown())]


def test_reads_messages_with_the_row_after_each() -> None:
    with LobsterReader(TEST_MESSAGES, TEST_ORDERBOOK) as reader:
        assert reader.levels == 2
        pairs = list(reader)
    assert len(pairs) == 47
    message, row = pairs[0]
    assert message == Message(1, 34_200_010_000_000, 1, 101, 50, 999_900, 1)
    assert row.shown() == ([(1_000_100, 150), (1_000_200, 200)], [(999_900, 150), (999_800, 300)])
    halt = pairs[20][0]
    assert (halt.line, halt.kind, halt.price) == (21, MessageType.HALT, -1)
    _, sentinel_bid = pairs[41]  # line 42: one bid level left
    assert sentinel_bid.bids == [(999_700, 250), (-9_999_999_999, 0)]
    assert sentinel_bid.shown()[1] == [(999_700, 250)]
    _, empty_asks = pairs[27]  # line 28: no asks at all
    assert empty_asks.shown()[0] == []


@pytest.mark.parametrize(
    ("text", "time_ns"),
    [
        ("34200.004241176", 34_200_004_241_176),
        ("34201.1", 34_201_100_000_000),
        ("57600", 57_600_000_000_000),
        ("34200.0042411760009", 34_200_004_241_176),  # float noise past the ns is dropped
        ("34200.", 34_200_000_000_000),
        ("172799.999999999", 172_799_999_999_999),  # the last nanosecond of two days
    ],
)
def test_time_is_exact_integer_nanoseconds(tmp_path: Path, text: str, time_ns: int) -> None:
    messages, orderbook = tmp_path / "m.csv", tmp_path / "b.csv"
    messages.write_text(f"{text},1,5,100,1000100,-1\n")
    orderbook.write_text(ROW + "\n")
    assert read_all(messages, orderbook)[0] == Message(1, time_ns, 1, 5, 100, 1_000_100, -1)


def test_windows_line_endings_and_a_missing_last_newline(tmp_path: Path) -> None:
    messages, orderbook = tmp_path / "m.csv", tmp_path / "b.csv"
    messages.write_bytes(f"{MESSAGE}\r\n{MESSAGE}".encode())
    orderbook.write_bytes(f"{ROW}\r\n{ROW}".encode())
    assert len(read_all(messages, orderbook)) == 4


# (case, message lines, orderbook lines, --levels, which file, line, what the error says)
BAD = [
    ("message columns", [MESSAGE, "34200.2,1,6,100"], [ROW, ROW], None, "m", 2, "4 columns, a"),
    ("row columns", [MESSAGE, MESSAGE], [ROW, ROW + ",1"], None, "b", 2, "9 columns, expected 8"),
    ("not 4 a level", [MESSAGE], ["1,2,3,4,5,6"], None, "b", 1, "6 columns: not 4 per level"),
    ("levels disagree", [MESSAGE], [ROW], 3, "b", 1, "are 2 levels, not the 3 asked for"),
    ("id not a number", ["34200.1,1,x,100,1000100,-1"], [ROW], None, "m", 1, "not an integer"),
    ("clock time", ["9:30:00,1,5,100,1000100,-1"], [ROW], None, "m", 1, "not seconds after"),
    ("time spaced", [" 34200.1,1,5,100,1000100,-1"], [ROW], None, "m", 1, "not seconds after"),
    ("time with _", ["34_200.1,1,5,100,1000100,-1"], [ROW], None, "m", 1, "not seconds after"),
    ("two days", ["172800,1,5,100,1000100,-1"], [ROW], None, "m", 1, "time 172800 is not before"),
    ("size with _", ["34200.1,1,5,1_00,1000100,-1"], [ROW], None, "m", 1, "not an integer"),
    ("size spaced", ["34200.1,1,5, 100,1000100,-1"], [ROW], None, "m", 1, "not an integer"),
    ("plus sign", ["34200.1,1,+5,100,1000100,-1"], [ROW], None, "m", 1, "not an integer"),
    ("20 digits", [f"34200.1,1,{10**19},100,1000100,-1"], [ROW], None, "m", 1, "not an integer"),
    ("5000 digits", [f"34200.1,1,{'1' * 5000},1,1,1"], [ROW], None, "m", 1, "not an integer"),
    ("row not numbers", [MESSAGE, MESSAGE], [ROW, "1,2,x,4,5,6,7,8"], None, "b", 2, "integers"),
    ("row with a float", [MESSAGE], ["100.5" + ROW[7:]], None, "b", 1, "not a row of integers"),
    ("empty column", [MESSAGE], ["," + ROW[8:]], None, "b", 1, "not a row of integers"),
    ("unknown type", ["34200.1,8,5,100,1000100,-1"], [ROW], None, "m", 1, "message type 8"),
    ("direction", ["34200.1,1,5,100,1000100,0"], [ROW], None, "m", 1, "direction 0 is neither"),
    ("halt code", ["34200.1,7,0,0,2,-1"], [ROW], None, "m", 1, "halt code 2 is not"),
    ("no size", ["34200.1,3,5,0,1000100,-1"], [ROW], None, "m", 1, "size 0 and price"),
    ("hidden size", ["34200.1,5,0,-100,1000100,-1"], [ROW], None, "m", 1, "size -100 and"),
    ("hidden none", ["34200.1,5,0,0,1000100,1"], [ROW], None, "m", 1, "size 0 and price"),
    ("cross price", ["34200.1,6,0,100,-1,-1"], [ROW], None, "m", 1, "size 100 and price -1"),
    ("time back", [MESSAGE, "34200.05,1,6,1,1,1"], [ROW, ROW], None, "m", 2, "backwards"),
    ("short book", [MESSAGE, MESSAGE, MESSAGE], [ROW, ROW], None, "m", 3, "more messages"),
    ("long book", [MESSAGE, MESSAGE], [ROW, ROW, ROW], None, "b", 3, "more rows than"),
    ("no messages", [], [ROW], None, "m", 0, "no messages"),
    ("blank line", [MESSAGE, ""], [ROW, ROW], None, "m", 2, "1 columns, a message has 6"),
]


@pytest.mark.parametrize(
    ("messages", "rows", "levels", "which", "line", "detail"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_input_names_the_file_and_line(
    tmp_path: Path,
    messages: list[str],
    rows: list[str],
    levels: int | None,
    which: str,
    line: int,
    detail: str,
) -> None:
    paths = {"m": tmp_path / "m.csv", "b": tmp_path / "b.csv"}
    paths["m"].write_text("".join(text + "\n" for text in messages))
    paths["b"].write_text("".join(text + "\n" for text in rows))
    with pytest.raises(LobsterFormatError) as raised:
        read_all(paths["m"], paths["b"], levels)
    where = f"{paths[which]}:{line}: " if line else f"{paths[which]}: "
    assert str(raised.value).startswith(where)
    assert detail in str(raised.value)
    assert (raised.value.path, raised.value.line) == (paths[which], line)


def test_missing_empty_and_binary_files(tmp_path: Path) -> None:
    present = tmp_path / "b.csv"
    present.write_text(ROW + "\n")
    with pytest.raises(LobsterFormatError, match=r"gone\.csv: No such file"):
        LobsterReader(tmp_path / "gone.csv", present)
    with pytest.raises(LobsterFormatError, match=r"gone\.csv: No such file"):
        LobsterReader(present, tmp_path / "gone.csv")
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(LobsterFormatError, match=r"e\.csv: no rows"):
        LobsterReader(present, empty)
    binary = tmp_path / "m.csv"
    binary.write_bytes(f"{MESSAGE}\n{MESSAGE}\n".encode() + b"\xff\xfe,1\n")
    present.write_text(f"{ROW}\n" * 3)
    with pytest.raises(LobsterFormatError, match=r"m\.csv:3: not ASCII text"):
        read_all(binary, present)


def test_a_line_beyond_the_limit_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    messages, orderbook = tmp_path / "m.csv", tmp_path / "b.csv"
    messages.write_text(MESSAGE + "\n")
    orderbook.write_text(ROW + "\n" + "1" * (LINE_LENGTH_MAX + 10) + "\n")
    with pytest.raises(LobsterFormatError, match=r"b\.csv:2: longer than"):
        read_all(messages, orderbook)


def row(text: str) -> BookRow:
    return parse_row(text.encode(), 7, text.count(",") + 1, Path("b.csv"))


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("1000100,100,999900,0,1000200,50,999800,70", "bid levels: a level follows an empty one"),
        ("1000200,100,999900,100,1000100,50,999800,70", "ask levels: prices not strictly"),
        ("1000100,100,999900,100,1000200,50,999900,70", "bid levels: prices not strictly"),
        ("1000100,-5,999900,100,1000200,50,999800,70", "ask levels: a size out of range"),
        ("-1000100,5,999900,100,-1000000,50,999800,70", "ask levels: a price out of range"),
        ("1000100,5,999900,99999999999999999999999,1000200,5,999800,7", "bid levels: a size"),
    ],
)
def test_row_levels_are_checked_when_shown(text: str, detail: str) -> None:
    with pytest.raises(LobsterFormatError, match=f"b.csv:7: {detail}"):
        row(text).shown()


def test_shown_levels_leave_out_empty_ones_whatever_their_price() -> None:
    shown = row("1000100,100,999900,100,0,0,0,0").shown()
    assert shown == ([(1_000_100, 100)], [(999_900, 100)])
    assert row("9999999999,0,-9999999999,0").shown() == ([], [])


def test_a_fifo_or_a_directory_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """Session 32's sweep: `--messages` naming a FIFO blocked `venue replay lobster` in its
    open for ever, without a word. The read runs in a thread here, so that a hang fails the
    test rather than hanging it; a writer opened afterwards lets it go. A FIFO of messages
    with no writer ends at once (no messages); an order book's is refused, read twice."""
    fifo = tmp_path / "messages.csv"
    os.mkfifo(fifo)
    (tmp_path / "a-directory").mkdir()
    refused: list[str] = []

    def read(messages: Path, orderbook: Path) -> None:
        try:
            read_all(messages, orderbook)
        except LobsterFormatError as error:
            refused.append(str(error))

    cases = [
        (fifo, TEST_ORDERBOOK),
        (tmp_path / "a-directory", TEST_ORDERBOOK),
        (TEST_MESSAGES, fifo),
        (Path("/dev/null"), TEST_ORDERBOOK),
    ]
    for messages, orderbook in cases:
        reading = threading.Thread(target=read, args=(messages, orderbook), daemon=True)
        reading.start()
        reading.join(timeout=30)  # a bound on a hang, not a timing assertion
        if reading.is_alive():  # the open blocked: unblock it, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            reading.join()
            pytest.fail(f"LobsterReader blocked on {messages}, {orderbook}")
    assert refused == [
        f"{fifo}: no messages",
        f"{tmp_path / 'a-directory'}: a directory, not a file: give the LOBSTER file",
        f"{fifo}: a pipe (the order book's first row is read twice, for its levels), not a"
        " file: give the LOBSTER file",
        "/dev/null: a device, not a file: give the LOBSTER file",
    ]


def test_messages_from_a_pipe_with_its_writer_are_read_as_from_the_file() -> None:
    """The reviewer of session 32 found `--config <(...)` refused by the same change: so was
    `--messages <(zcat M.csv.gz)`, which worked before. A pipe of messages is read."""
    read_end, write_end = os.pipe()

    def writer() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(TEST_MESSAGES.read_bytes())

    writing = threading.Thread(target=writer, daemon=True)
    writing.start()
    try:
        pairs = read_all(Path(f"/dev/fd/{read_end}"), TEST_ORDERBOOK)
    finally:
        os.close(read_end)
        writing.join(timeout=30)  # a bound, not a timing assertion
    assert pairs == read_all(TEST_MESSAGES, TEST_ORDERBOOK)


def test_a_file_whose_kind_cannot_be_read_is_refused_and_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reviewer of session 32: when `os.fstat` failed (an I/O error) the descriptor just
    opened was never closed, and the OSError was no LobsterFormatError. Here the kernel's
    failure is stood in for: `os` is not ours."""
    opened = len(os.listdir("/proc/self/fd"))

    def failing(descriptor: int) -> os.stat_result:
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fstat", failing)
        with pytest.raises(LobsterFormatError) as raised:
            LobsterReader(TEST_MESSAGES, TEST_ORDERBOOK)
    assert str(raised.value) == f"{TEST_MESSAGES}: Input/output error"
    assert len(os.listdir("/proc/self/fd")) == opened
