"""The private pushes' bytes, pinned: the cross, mixed and requote workloads replayed through
`ExecReporter`, `OrderHistory.record` and `private_streams.sequence` (what
`PrivateStreams.assign` runs) give exactly the bytes the code before issue 12's rebuild gave,
but for one deliberate change: one balance push per account per asset per command.

The digests were made in two steps. The code before the rebuild (main at 40f98ae) gave the
first pinned pushes: the same `bench.outbound_bench.Replay` batches, its gateway modules
doing the reports and the history (30,946 pushes for cross, 5,905 for mixed, 6,546 for
requote). Main at 5fe23d4 (/work/wt/base) still gave exactly those; from its pushes, command
by command, every `balance` push followed by another of the same account and asset in the
same command was dropped (5,497 for cross, 256 for mixed, 457 for requote), the rest
renumbered per account and re-encoded (decoding and encoding gives base's bytes back
unchanged, checked), and hashed through `digest` below (docs/protocol.md §8.3). The
reporter's own output matched that derivation for all three workloads, so nothing but the
dropped balance pushes and the seqs after them moved. A change of one byte
in any push, seq, the order history or the exec id counter fails this test.

Re-pinned in session 22: the order history's records gained `quote_set` and `expire_at`
(order.status shows them). Every push and the exec id counter are as before, and so is the
history image with those two fields taken out of each record (checked for all three
workloads); the old digests were cross 0080e3d8…, mixed d47036b5…, requote c6870268….
"""

import hashlib
from typing import Any

import msgspec
import pytest

from bench.outbound_bench import Replay
from tests.conftest import Venue, drain_pushes

OPS = 3_000
SEED = 7
BASE_DIGESTS = {
    "cross": "6d58581208c0fbb863455e6d9c16b74f234ea37d7bae6482b54f1e202a6f6a60",
    "mixed": "d4567fcb31e9baf59c90abefb1d83afe0a83e3782fb0a13c77fffe04e69e752b",
    "requote": "273852c9320f4b4e034a9fd8632f15b5731babac340c59f32b27509d478f611d",
}


def digest(replay: Replay) -> str:
    """sha256 over every push (account, seq, bytes), the order history and the exec id."""
    hasher = hashlib.sha256()
    for account, seq, payload in replay.payloads:
        hasher.update(b"%d %d %d\n" % (account, seq, len(payload)))
        hasher.update(payload)
    hasher.update(msgspec.json.encode(replay.history.image()))
    hasher.update(b"%d" % replay.reporter.last_exec_id)
    return hasher.hexdigest()


@pytest.mark.parametrize("workload", sorted(BASE_DIGESTS))
def test_every_private_push_is_byte_for_byte_as_before(workload: str) -> None:
    replay = Replay(OPS, SEED, workload)
    replay.keep_payloads = True
    replay.private()
    assert replay.pushes == len(replay.payloads) > OPS // 2
    assert digest(replay) == BASE_DIGESTS[workload]


# ----------------------------------------------------------------- one balance per command


SYMBOL = "AAPLx-USD"


def test_a_multi_fill_command_sends_each_balance_once_in_its_final_state(run_venue: Any) -> None:
    """An IOC buy sweeping three of a maker's asks (three fills, then its rest canceled):
    each account gets one balance push per asset it changed, carrying the state the
    `balances` query gives after the command, in the place of that balance's last change."""

    async def scenario(venue: Venue) -> None:
        maker = await venue.client("alpha")
        taker = await venue.client("taker")
        for client in (maker, taker):
            await client.subscribe_account()
        for price in ("187.30", "187.35", "187.40"):
            await maker.place(SYMBOL, "sell", "0.5", price)
        await drain_pushes(maker)
        await drain_pushes(taker)
        await taker.place(SYMBOL, "buy", "2", "187.50", tif="ioc")  # 1.5 fills, 0.5 canceled
        for client, expected in (
            (maker, ["trade", "settlement"] * 3 + ["balance"] * 2),
            (taker, ["new"] + ["trade", "settlement"] * 3 + ["balance", "canceled", "balance"]),
        ):
            pushes = [p for p in await drain_pushes(client) if p.get("ch") == "account"]
            kinds = [p["data"]["exec_type"] if p["type"] == "exec" else p["type"] for p in pushes]
            assert kinds == expected
            seqs = [p["seq"] for p in pushes]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            pushed = [p["data"] for p in pushes if p["type"] == "balance"]
            assert sorted(row["asset"] for row in pushed) == ["AAPLx", "USD"]  # once each
            now = {row["asset"]: row for row in (await client.balances())["balances"]}
            assert pushed == [now[row["asset"]] for row in pushed]
        # the taker's cash: its last change is the release of the canceled rest's hold
        assert pushes[-1]["data"]["asset"] == "USD" and pushes[-1]["data"]["held"] == "0.000000"

    run_venue(scenario)
