"""Snapshot files: the whole venue state at a journal sequence number, written atomically.

Owns the file format and the atomic write: a snapshot is written to a temporary file,
fsynced, renamed into place and the directory fsynced, so a crash leaves either the old
snapshot or the new one, never half of one. A file is `snapshot-<seq>.bin`: an 8-byte
magic, the 8-byte journal seq it covers, a CRC32 and the length of the body, then the body
(msgpack of a `Snapshot`). A file that fails any check is ignored (and logged); recovery
uses the newest valid one (`latest`: its per-account entries too, `check_entries`) and
replays the journal after its seq; a symbolic link to nothing is refused
(`core.journal.refuse_dangling_link`; a cluster gateway's replica passes it over:
core/stream_snapshots.py). A read keeps the gateway's per-account maps undecoded, decoded an
entry at a time by their restore (`DecodedOnRead`, `entries_as`). A `.tmp` file left by a
crash mid-write is never read; `remove_stray` deletes them (the server's start and `venue verify`
call it, with the directory theirs alone). `SNAPSHOTS_KEPT` bounds the files kept.
A role's periodic snapshots (the core's, a cluster gateway's) share their rules here: written
every interval with records since the last (`periodically`), a refusal of the disk a warning,
never fatal (`write_or_warn`).
"""

import asyncio
import contextlib
import logging
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec

from core.journal import refuse_dangling_link
from core.snapshot_entries import ACCOUNT_IMAGE, HISTORY_IMAGE, contiguous_seqs
from engine.operations import OPERATIONS_RETAINED_LEGACY
from engine.snapshot import VenueImage, made
from engine.venue import VenueConfig

log = logging.getLogger("venue.snapshots")

MAGIC = b"TVSNAP01"
HEADER = struct.Struct(">8sQII")  # magic, journal seq, crc32 of the body, body length
CHECK_CHUNK_BYTES = 1 << 20  # `checked_seq` reads a body of hundreds of MB in 1 MiB steps
SNAPSHOTS_KEPT = 3  # the newest is enough; two more survive a bad disk block in the newest


class Snapshot(msgspec.Struct, frozen=True):
    """What a snapshot file holds: the venue image and the gateway's own state."""

    seq: int  # the last journal record this state includes
    venue: VenueImage
    gateway: dict[str, Any]  # private streams, report counters: the server's to interpret
    # The reserve staleness bound the journal's first record ran under (`first_rules`); 0 in
    # snapshots written before it was kept.
    first_staleness_us: int = 0


def first_rules(image: Snapshot | None, configured_staleness_us: int) -> VenueConfig:
    """The engine's rules to replay a journal from its first record under. A journal begun
    since they are journaled starts with `SetReserveStaleness` (a build journals it first),
    which sets them, so these matter only for one begun before: it ran under the bound its
    venue was built with, which its snapshots keep (`first_staleness_us`; absent: the
    image's own), else under `configured_staleness_us` (the config's, as it always was), and
    forgot all but the newest `OPERATIONS_RETAINED_LEGACY` cl_op_ids until its first
    `SetReserveStaleness` (the first start that journals the rules, `VenueCore`)."""
    legacy_ids = OPERATIONS_RETAINED_LEGACY
    if image is None:
        return VenueConfig(
            reserve_staleness_max_us=configured_staleness_us, operations_retained_max=legacy_ids
        )
    rules = image.venue.config
    staleness_us = image.first_staleness_us or rules.reserve_staleness_max_us
    return msgspec.structs.replace(
        rules, reserve_staleness_max_us=staleness_us, operations_retained_max=legacy_ids
    )


def path_for(directory: Path, seq: int) -> Path:
    return directory / f"snapshot-{seq:020d}.bin"


class SnapshotUnsettled(OSError):
    """The snapshot's file is in place (`path`), but a step after its rename failed (`step`):
    the directory's fsync (the rename may not survive a crash; older files are kept) or the
    removal of an older file. An OSError still, naming the file that failed (`filename`, as
    `failed` did): a stop's snapshot fails as before, its line naming that file."""

    def __init__(self, path: Path, step: str, failed: OSError) -> None:
        super().__init__(failed.errno, failed.strerror, failed.filename)
        self.path = path
        self.step = step


# How deep into the gateway's image its maps are encoded entry by entry (gateway ->
# private or order_history -> accounts -> each account's): one msgspec call holds the GIL
# for all it encodes, and a long run's 335 MB snapshot took ~2 s in one, on the I/O thread,
# during which the event loop answered nothing. An account's part is at most a few MB
# (10,000 events or closed orders), a few ms; the loop gets its turn between them.
GATEWAY_MAP_DEPTH = 3


def encode(snapshot: Snapshot) -> bytes:
    """`msgspec.msgpack.encode(snapshot)`, the same bytes, made in pieces (`pieces`)."""
    return b"".join(pieces(snapshot))


def pieces(snapshot: Snapshot) -> Iterator[bytes]:
    """The snapshot's msgpack, in order, a piece per msgspec call: the struct as the map of
    its fields, the gateway's maps split entry by entry down to `GATEWAY_MAP_DEPTH`."""
    fields = snapshot.__struct_fields__
    yield _map_header(len(fields))
    for name in fields:
        yield _ENCODER.encode(name)
        value = getattr(snapshot, name)
        if name == "gateway":
            yield from _map_pieces(value, GATEWAY_MAP_DEPTH)
        else:
            yield _ENCODER.encode(value)


def _encodable(value: Any) -> Any:
    """The encoder's hook: a read image's `DecodedOnRead` map as the map it was read from
    (its entries' bytes as they were), `Later` parts as what they make (`made`)."""
    if type(value) is DecodedOnRead:
        return value.entries
    return made(value)


# (`_encodable`: an image taken for a write holds `Later` parts, made as they are encoded)
_ENCODER = msgspec.msgpack.Encoder(enc_hook=_encodable)


def _map_pieces(value: Any, depth: int) -> Iterator[bytes]:
    if depth == 0 or type(value) is not dict:
        yield _ENCODER.encode(value)
        return
    yield _map_header(len(value))
    for key, item in value.items():  # in insertion order, as msgspec encodes a dict
        yield _ENCODER.encode(key)
        yield from _map_pieces(item, depth - 1)


def _map_header(length: int) -> bytes:
    """msgpack's header of a map of `length` entries: fixmap, map 16 or map 32."""
    if length < 16:
        return bytes((0x80 | length,))
    if length < 2**16:
        return b"\xde" + length.to_bytes(2, "big")
    return b"\xdf" + length.to_bytes(4, "big")


def write(directory: Path, snapshot: Snapshot) -> Path:
    """Write `snapshot` atomically; returns its path. Older files beyond the kept few go. A
    failure before the rename leaves no file (its error raised: `OSError`, or the encoder's
    `TypeError`), one after it `SnapshotUnsettled`."""
    final = path_for(directory, snapshot.seq)
    temporary = final.with_suffix(".tmp")
    try:
        # Owner-only whatever the umask: a snapshot holds every participant's balances and
        # orders (a spare left by a crash keeps its mode through O_CREAT: set again)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(descriptor, 0o600)
            _write_body(file, snapshot)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
    except BaseException:  # a full disk, a value not encodable (the body is encoded
        # while written), an interruption: the half-written file's space given back at once
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    try:
        fsync_directory(directory)
    except OSError as failed:
        raise SnapshotUnsettled(final, "its directory not synced", failed) from failed
    try:
        for old in named_oldest_first(directory)[:-SNAPSHOTS_KEPT]:
            old.unlink(missing_ok=True)
    except OSError as failed:
        raise SnapshotUnsettled(final, "an older snapshot not removed", failed) from failed
    return final


def write_said(
    directory: Path,
    snapshot: Snapshot,
    said_by: logging.Logger,
    capture_ms: float | None = None,
) -> Path:
    """`write`, then its `snapshot written` line on `said_by` (the role's log), with how long
    taking the image held the event loop (`capture_ms`), when the role measured it."""
    started = time.perf_counter()
    path = write(directory, snapshot)
    elapsed_ms = round((time.perf_counter() - started) * 1e3, 1)
    fields: dict[str, object] = {"seq": snapshot.seq, "bytes": path.stat().st_size}
    fields["ms"] = elapsed_ms
    if capture_ms is not None:
        fields["capture_ms"] = capture_ms
    said_by.info("snapshot written", extra=fields | {"path": str(path)})
    return path


def write_or_warn(
    directory: Path,
    snapshot: Snapshot,
    said_by: logging.Logger,
    retry_s: float,
    capture_ms: float | None = None,
) -> bool:
    """A periodic snapshot: written (True), or its disk's refusal (full, read-only, an I/O
    error) a warning on `said_by`, tried again in `retry_s` (False), never a stop: the journal
    (a cluster's stream) holds every command, and a recovery replays more of it meanwhile."""
    try:
        write_said(directory, snapshot, said_by, capture_ms)
    except SnapshotUnsettled as unsettled:  # the file is there: said so
        said_by.warning(
            "snapshot written, but %s: tried again in %d s",
            unsettled.step,
            retry_s,
            extra={
                "error": unsettled.strerror or repr(unsettled),
                "path": str(unsettled.path),
                "failed_path": unsettled.filename,  # the older file not removed, if named
            },
        )
        return False
    except OSError as refused:
        said_by.warning(
            "snapshot not written: the journal holds every command; tried again in %d s",
            retry_s,
            extra={"error": refused.strerror or repr(refused), "data_dir": str(directory)},
        )
        return False
    return True


async def periodically(
    interval_s: Callable[[], float],
    position: Callable[[], int],
    take: Callable[[], Awaitable[bool]],
) -> None:
    """Forever: every `interval_s()` with records since the last snapshot written (the
    seq `position()` says), `take` one (True: written; False: tried at the next interval)."""
    last_seq = position()
    while True:
        await asyncio.sleep(interval_s())
        seq = position()
        if seq != last_seq and await take():
            last_seq = seq


def _write_body(file: BinaryIO, snapshot: Snapshot) -> None:
    """The header and body of `snapshot` into `file`: the pieces written as they are made,
    their CRC32 and length counted on the way, the header (written first, zeros in their
    place) rewritten at the end. Never the whole body at once: joined, it was held twice
    (the pieces and the join) and cost ~1.8x the CPU on a 58 MB body."""
    file.write(HEADER.pack(MAGIC, snapshot.seq, 0, 0))  # (a .tmp file: never read so)
    crc, length = 0, 0
    for piece in pieces(snapshot):
        file.write(piece)
        crc = zlib.crc32(piece, crc)
        length += len(piece)
    file.seek(0)
    file.write(HEADER.pack(MAGIC, snapshot.seq, crc, length))


def remove_stray(directory: Path) -> list[Path]:
    """Delete half-written snapshot files (a crash before their rename); the paths removed.

    Only while no writer can be mid-write in `directory`: the caller holds its journal.
    """
    removed = []
    for stray in sorted(directory.glob("snapshot-*.tmp")):
        size = stray.lstat().st_size  # (a link's own: the file it named may be gone)
        stray.unlink(missing_ok=True)
        log.warning("removed a half-written snapshot", extra={"path": str(stray), "bytes": size})
        removed.append(stray)
    return removed


def latest(directory: Path) -> Snapshot | None:
    """The newest snapshot that passes every check, `check_entries` among them, or None. One
    whose per-account entries do not decode is logged and passed over for the older one, as
    a damaged file is: its restore would fail, where the older one's replay of more of the
    journal starts the venue (the check costs what the restore's decoding does once more)."""
    for path, snapshot in survey(directory):
        if snapshot is None:
            continue
        try:
            check_entries(snapshot)
        except msgspec.DecodeError as undecoded:  # (a ValidationError too; names the file)
            log.warning("%s: ignored, %s", path, undecoded)
            continue
        return snapshot
    return None


def survey(directory: Path) -> Iterator[tuple[Path, Snapshot | None]]:
    """Each snapshot file (`named_oldest_first`: another name is logged and passed over),
    newest first, with what it holds (None: damaged or half-written, logged); read one by
    one, so a caller that stops early reads no more. A file that is a symbolic link to
    nothing is refused (`DanglingLink`), as the journal is: a snapshot kept elsewhere that
    is missing now is the operator's to restore or remove, not skipped."""
    for path in named_newest_first(directory):
        refuse_dangling_link(path, "recovering as if it had never been written")
        yield path, read(path)


def read(path: Path) -> Snapshot | None:
    """The snapshot in `path`, or None (logged) if the file is damaged or half-written."""
    data = path.read_bytes()
    header = _header(path, data)
    if header is None:
        return None
    seq, crc, length = header
    body = memoryview(data)[HEADER.size :]  # not a copy: a snapshot may be hundreds of MB
    if not _body_checks_out(path, len(body), zlib.crc32(body), crc, length):
        return None
    parts = msgspec.msgpack.decode(body, type=_SnapshotParts)
    if parts.seq != seq:
        log.warning("%s: ignored, header and body disagree on the seq", path)
        return None
    try:
        gateway = {key: _gateway_part(raw, (key,), path) for key, raw in parts.gateway.items()}
    except msgspec.DecodeError as undecoded:  # a map's keys not UTF-8: its checksum right
        log.warning("%s: ignored, its gateway part does not decode (%s)", path, undecoded)
        return None
    return Snapshot(parts.seq, parts.venue, gateway, parts.first_staleness_us)


def checked_seq(path: Path) -> int | None:
    """The seq in `path`'s header if its header, length and CRC check out as `read` checks
    them, else None (logged); the body streamed in `CHECK_CHUNK_BYTES` and not decoded, so
    memory stays flat (`venue journal archive` checks a snapshot of hundreds of MB so)."""
    with path.open("rb") as file:
        header = _header(path, file.read(HEADER.size))
        if header is None:
            return None
        seq, crc, length = header
        body_crc = body_bytes = 0
        while chunk := file.read(CHECK_CHUNK_BYTES):
            body_crc = zlib.crc32(chunk, body_crc)
            body_bytes += len(chunk)
    return seq if _body_checks_out(path, body_bytes, body_crc, crc, length) else None


def _header(path: Path, data: bytes) -> tuple[int, int, int] | None:
    """(seq, body CRC32, body length) from the header `data` begins with, or None (logged)."""
    if len(data) < HEADER.size:
        log.warning("%s: ignored, shorter than a header", path)
        return None
    magic, seq, crc, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        log.warning("%s: ignored, damaged or half-written", path)
        return None
    return seq, crc, length


def _body_checks_out(path: Path, body_bytes: int, body_crc: int, crc: int, length: int) -> bool:
    if body_bytes != length or body_crc != crc:
        log.warning("%s: ignored, damaged or half-written", path)
        return False
    return True


# The gateway image's maps with an entry per account, at these keys: the private histories
# and the closed-order history, nearly all of a snapshot at the bounds. Read, they are
# `DecodedOnRead`: an account's entry is decoded when its restore takes it, so a restore holds
# the maps' bytes and one account's decoded entry beside what it restored, not the whole
# image decoded at once (session 34: a restored venue held twice the memory it had, the
# decoded image's freed objects spread through the heap, which the allocator kept). Each with
# the kind its entries decode into (core/snapshot_entries.py), which `check_entries` checks.
PER_ACCOUNT_MAPS: Final[Mapping[tuple[str, ...], Any]] = {
    ("private",): HISTORY_IMAGE,
    ("order_history", "accounts"): ACCOUNT_IMAGE,
}


class _SnapshotParts(msgspec.Struct, frozen=True):
    """A `Snapshot` as `read` decodes it first: the gateway's parts still encoded."""

    seq: int
    venue: VenueImage
    gateway: dict[str, msgspec.Raw]
    first_staleness_us: int = 0


assert _SnapshotParts.__struct_fields__ == Snapshot.__struct_fields__, "read decodes them all"


class DecodedOnRead(Mapping[str, Any]):
    """A map of a read snapshot whose values are decoded each time one is read (`items`
    decodes one per step), from the map's bytes as the file held them, which it keeps
    (`entries`: each value's msgpack, in one copy of the map's). A reader takes each once.
    `at` (its keys in the image) and `file`: where the map is, named by an entry that does
    not decode."""

    __slots__ = ("at", "entries", "file")

    def __init__(self, entries: dict[str, msgspec.Raw], at: tuple[str, ...], file: Path):
        self.entries = entries
        self.at = at
        self.file = file

    def __getitem__(self, key: str) -> Any:
        return self.decoded(key, self.entries[key], _ANY)

    def decoded(self, key: str, raw: msgspec.Raw, decoder: msgspec.msgpack.Decoder[Any]) -> Any:
        """The entry `raw` of account `key`, decoded by `decoder`; one that does not decode
        raises its error again (the same type: a `ValidationError` stays one) naming the
        map, the account and the file, which the decoder's own message does not."""
        try:
            return decoder.decode(raw)
        except msgspec.DecodeError as undecoded:
            where = ".".join(self.at)
            raise type(undecoded)(
                f"{self.file}: the {where} entry of account {key} does not decode ({undecoded})"
            ) from undecoded

    def __contains__(self, key: object) -> bool:  # (`Mapping`'s would decode the value)
        return key in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def entries_as(part: Mapping[str, Any], kind: Any) -> Iterator[tuple[str, Any]]:
    """The entries of `part` (a map of a gateway image), each value as `kind` (a type msgspec
    knows): a read snapshot's `DecodedOnRead` decoded straight into it, one at a time, any
    other map's (an image not written, or decoded whole) converted."""
    if type(part) is DecodedOnRead:
        decoder = msgspec.msgpack.Decoder(kind)
        return ((key, part.decoded(key, raw, decoder)) for key, raw in part.entries.items())
    return ((key, msgspec.convert(value, kind)) for key, value in part.items())


def check_entries(image: Snapshot) -> None:
    """Decode each entry of `image`'s `PER_ACCOUNT_MAPS` as its restore will (its kind), one
    at a time, each dropped before the next, and check what the restore asserts of it (its
    key an account id, a private history's seqs contiguous): a file whose checksum holds
    but whose entries do not restore (`msgspec.DecodeError`, naming the map, the account and
    the file) is found before a restore takes it, not by the restore, with memory flat. It
    costs what the restore's own decoding does again (docs/gateway.md, "A long run")."""
    for keys, kind in PER_ACCOUNT_MAPS.items():
        part: Any = image.gateway
        for key in keys:
            part = part.get(key) if isinstance(part, Mapping) else None
        if isinstance(part, Mapping):
            for account, entry in entries_as(part, kind):  # each decoded, then let go
                problem = _entry_problem(keys, account, entry)
                if problem is not None:
                    file = f"{part.file}: " if type(part) is DecodedOnRead else ""
                    where = ".".join(keys)
                    raise msgspec.ValidationError(
                        f"{file}the {where} entry of account {account} does not restore ({problem})"
                    )


def _entry_problem(keys: tuple[str, ...], account: str, entry: Any) -> str | None:
    """What the restore of the entry of `account` in the map at `keys` would fail on, or None."""
    try:
        int(account)  # as the restore takes it
    except ValueError:
        return f"its key {account!r} is not an account id"
    if keys == ("private",) and not contiguous_seqs(*entry):
        return "its seqs are not its stream's last ones, contiguous"
    return None


_ANY = msgspec.msgpack.Decoder()
_ENTRIES = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])


def _gateway_part(raw: msgspec.Raw, keys: tuple[str, ...], file: Path) -> Any:
    """The gateway's part at `keys` of `file`, decoded, but for `PER_ACCOUNT_MAPS`."""
    within = [kept for kept in PER_ACCOUNT_MAPS if kept[: len(keys)] == keys]
    if not within:
        return _ANY.decode(raw)
    if keys in within:  # its own bytes (one copy of the map's): the file's are freed when read
        raw = raw.copy()
    try:
        entries = _ENTRIES.decode(raw)
    except msgspec.ValidationError:  # not a map of str keys (an image older than it): as is
        return _ANY.decode(raw)
    if keys in within:
        return DecodedOnRead(entries, keys, file)
    return {key: _gateway_part(entry, (*keys, key), file) for key, entry in entries.items()}


def named_seq(path: Path) -> int | None:
    """The seq a snapshot file's name says (`path_for`'s), or None for another name."""
    digits = path.name.removeprefix("snapshot-").removesuffix(".bin")
    if not digits.isdigit() or path_for(path.parent, int(digits)) != path:
        return None
    return int(digits)


def named_oldest_first(directory: Path) -> list[Path]:
    """The snapshot files in `directory` named as `path_for` names them, oldest first by the
    seq named: any other `snapshot-*.bin` (a stray copy, `snapshot-old.bin`) is neither read
    nor pruned, nor counted by the archive's bound (`oldest_named_seq`)."""
    found = [(named_seq(path), path) for path in directory.glob("snapshot-*.bin")]
    return [path for seq, path in sorted((seq, path) for seq, path in found if seq is not None)]


def named_newest_first(directory: Path) -> list[Path]:
    """`named_oldest_first`, newest first, for a restart to read: each other
    `snapshot-*.bin` logged as passed over (a file journal's venue, a cluster's core,
    standby or gateway alike)."""
    for stray in sorted(directory.glob("snapshot-*.bin")):
        if named_seq(stray) is None:
            log.warning("%s: ignored, not a snapshot's name (snapshot-<20 digits>.bin)", stray)
    return named_oldest_first(directory)[::-1]


def oldest_named_seq(directory: Path) -> int | None:
    """The seq of the oldest snapshot file in `directory` (by its name), or None."""
    named = named_oldest_first(directory)
    return named_seq(named[0]) if named else None


def fsync_directory(directory: Path) -> None:
    """Make the entries created or removed in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
