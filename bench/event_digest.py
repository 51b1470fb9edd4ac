"""An event digest: evidence that an engine change left every event and the state alike.

Owns one fingerprint per (workload, ops, seed, ledger): the blake2b of every event the
workload's setup and commands produce, msgpack-encoded in order, and the venue's
`state_hash()` at the end. Two engines give equal digests only if they emit the same
events (every field, the DvP transfers and balance reports included) and end in the same
state. Run `python -m bench.event_digest` in two checkouts to compare them.
"""

import argparse
import hashlib

import msgspec

from bench import workloads

WORKLOADS = ("mixed", "addcancel", "cross")
DEFAULT_OPS = 50_000
DEFAULT_SEED = 7


def digest(name: str, ops: int, seed: int, ledger: bool) -> tuple[str, str]:
    """(events digest, state hash) of one workload run on a fresh venue."""
    workload = workloads.build(name, ops, seed)
    venue = workload.fresh_venue(ledger)  # the setup ran on it: its events are not seen
    encode = msgspec.msgpack.Encoder().encode
    events = hashlib.blake2b(digest_size=16)
    for command in workload.commands:
        for event in venue.execute(command):
            events.update(encode(event))
    return events.hexdigest(), venue.state_hash()[:32]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=DEFAULT_OPS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    for name in WORKLOADS:
        for ledger in (False, True):
            events, state = digest(name, args.ops, args.seed, ledger)
            print(f"{name}{'+ledger' if ledger else ''} {events} {state}")


if __name__ == "__main__":
    main()
