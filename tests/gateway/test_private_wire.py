"""The private pushes' bytes, pinned: the cross, mixed and requote workloads replayed through
`ExecReporter`, `OrderHistory.record` and `private_streams.sequence` (what
`PrivateStreams.assign` runs) give exactly the bytes the code before issue 12's rebuild gave.

The digests were made once with that code (main at 40f98ae, /work/wt/base): the same
`bench.outbound_bench.Replay` batches (engine and `bench.workloads` are base's: the same
events), base's gateway modules doing the reports and the history, each push encoded as its
`assign` did (`wire.encode(Sequenced(ch, seq, epoch, type, ts, data))`), through `digest`
below: 30,946 pushes for cross, 5,905 for mixed, 6,546 for requote. A change of one byte in
any push, seq, the order history or the exec id counter fails this test.
"""

import hashlib

import msgspec
import pytest

from bench.outbound_bench import Replay

OPS = 3_000
SEED = 7
BASE_DIGESTS = {
    "cross": "fd8b985525c2716bd7bf76047fe25ff9cc108160ac1949463c93b25621a3a109",
    "mixed": "f4005c304e43989d784d23cd8b8e754775fdbe61a20dac91e166855f18cbc63d",
    "requote": "0e8a10d26f6a2bd73401a8ff06d37a4dcb7845bae2a403d41fc6ea12be458233",
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
