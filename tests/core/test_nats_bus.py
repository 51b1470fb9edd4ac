"""The cluster's records and the core's once-and-in-order rule (pure parts of core/nats_bus.py
and core/cluster_core.py; the processes are tested in tests/cluster/test_roles.py)."""

from core.cluster_core import CoreGatewayPart
from core.nats_bus import (
    ClusterCodec,
    Origin,
    Submission,
    Submissions,
    decode_record,
    decode_submissions,
    encode_submissions,
)
from core.sequencer import Executed
from engine.commands import AdvanceClock, PlaceOrder
from engine.enums import Side

PLACE = PlaceOrder(account=1, symbol="AAPLx-USD", side=Side.BUY, price=18_700, qty=1, ts_us=5)


def test_a_record_carries_the_command_and_its_origin_as_plain_data() -> None:
    codec = ClusterCodec()
    payload = codec.encode(Executed(7, PLACE, [], Origin("gw-a.1", 3, "q1")))
    record = decode_record(payload)
    assert record.command == PLACE and record.origin == Origin("gw-a.1", 3, "q1")


def test_the_core_s_own_commands_and_local_origins_record_no_gateway() -> None:
    codec = ClusterCodec()
    for origin in (None, object()):  # a timer's, or whatever is not a cluster origin
        record = decode_record(codec.encode(Executed(1, AdvanceClock(ts_us=9), [], origin)))
        assert record.origin == Origin("", 0)


def test_each_gateway_s_requests_are_taken_once_and_in_order() -> None:
    codec = ClusterCodec()
    assert codec.is_next("gw-a.1", 1) and not codec.is_next("gw-a.1", 2)  # 1 comes first
    codec.seen(Origin("gw-a.1", 1))
    assert not codec.is_next("gw-a.1", 1)  # sent again: sequenced already
    assert codec.is_next("gw-a.1", 2)
    assert codec.is_next("gw-b.2", 1)  # each gateway process counts on its own


def test_replay_tells_the_codec_which_requests_were_sequenced() -> None:
    writer, reader = ClusterCodec(), ClusterCodec()
    payload = writer.encode(Executed(1, PLACE, [], Origin("gw-a.1", 41)))
    assert reader.decode(payload) == PLACE
    assert reader.is_next("gw-a.1", 42) and not reader.is_next("gw-a.1", 41)


def test_the_core_s_snapshot_part_keeps_the_last_request_per_gateway() -> None:
    codec = ClusterCodec()
    codec.seen(Origin("gw-a.1", 12))
    restored = ClusterCodec()
    CoreGatewayPart(restored).restore_gateway(CoreGatewayPart(codec).gateway_image())
    assert restored.is_next("gw-a.1", 13) and not restored.is_next("gw-a.1", 12)


def test_submissions_round_trip_in_order() -> None:
    sent = Submissions("gw-a.1", [Submission(1, None, PLACE), Submission(2, "q", PLACE)])
    assert decode_submissions(encode_submissions(sent)) == sent
