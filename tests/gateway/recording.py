"""A transport stand-in for in-process gateway tests: it records what a session writes, cut
back into whole frames (a packed array frame is handed over in parts: header, body, bracket)."""

from typing import Any

from gateway import frames


class Recorder:
    """A transport that keeps each write's frames and never closes: `chunks` as handed over,
    `writes` as whole frames (a packed frame may come in parts: header, body, bracket)."""

    def __init__(self) -> None:
        self.chunks: list[list[bytes]] = []
        self.writes: list[list[bytes]] = []

    def writelines(self, data: Any) -> None:
        self.chunks.append(list(data))
        self.writes.append(whole_frames(b"".join(self.chunks[-1])))

    def is_closing(self) -> bool:
        return False


def whole_frames(data: bytes) -> list[bytes]:
    """A write's bytes cut into its server frames (unmasked: RFC 6455 §5.2)."""
    cut = []
    while data:
        length, start = data[1] & 0x7F, 2
        if length == frames.LENGTH_16:
            length, start = int.from_bytes(data[2:4], "big"), 4
        elif length == frames.LENGTH_64:
            length, start = int.from_bytes(data[2:10], "big"), 10
        cut.append(data[: start + length])
        data = data[start + length :]
    return cut
