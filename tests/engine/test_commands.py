"""engine/commands.py: the refusal a cluster's core journals for a command it could not read."""

import msgspec

from engine.commands import AdvanceClock, AnyCommand, PlaceOrder, RefuseUnreadCommand
from engine.enums import Side
from engine.events import CommandRejected
from engine.reasons import ErrorCode
from tests.engine.conftest import SYMBOL, Harness


def test_an_unread_command_is_refused_and_changes_nothing_but_the_time() -> None:
    refused, ticked = Harness(), Harness()
    place = PlaceOrder(account=1, symbol=SYMBOL, side=Side.BUY, price=10_000, qty=1)
    for harness in (refused, ticked):
        harness.do(place)
    at_us = refused.now()
    events = refused.do(RefuseUnreadCommand(kind="AuditBooks", ts_us=at_us))
    ticked.do(AdvanceClock(ts_us=at_us))  # nothing due: only the venue's time moves
    assert [type(event) for event in events] == [CommandRejected]
    assert events[0].reason is ErrorCode.UNSUPPORTED_COMMAND and events[0].account == 0
    assert events[0].detail == (
        "the active core cannot read this command ('AuditBooks'): the gateway runs a later"
        " build than the core; nothing done, send it again once every core runs the gateway's"
        " build"
    )
    assert refused.venue.state_hash() == ticked.venue.state_hash()


def test_an_unread_command_of_no_readable_type_says_so() -> None:
    events = Harness().do(RefuseUnreadCommand(kind=""))
    assert "(of no type it could read)" in events[0].detail


def test_the_refusal_is_journaled_and_read_back_as_it_was() -> None:
    refusal = RefuseUnreadCommand(kind="AuditBooks", ts_us=7)
    payload = msgspec.msgpack.encode(refusal)
    assert msgspec.msgpack.decode(payload, type=AnyCommand) == refusal
