"""The bus between gateway and core: the embedded one adds no hop, the core never imports
the gateway, and a core driven through the bus alone tells its listener of each command
as it executes and again once it is durable."""

import ast
import asyncio
from pathlib import Path
from typing import Any

from core import config as venue_config
from core.bus import CoreListener, EmbeddedBus
from core.sequencer import Executed, Sequencer
from core.venue_core import VenueCore
from engine.commands import CancelAll
from tests.sample_config import SAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """A listener that only records what the core tells it (the gateway's place)."""

    def __init__(self) -> None:
        self.seen_executed: list[Executed] = []
        self.seen_released: list[Executed] = []
        self.core: VenueCore | None = None
        self.durable_seq_when_released: list[int] = []

    def executed(self, executed: Executed) -> None:
        self.seen_executed.append(executed)

    def released(self, batch: list[Executed]) -> None:
        assert self.core is not None
        # the journal's last durable seq covers every command released
        self.durable_seq_when_released.append(self.core.sequencer.journal.last_seq())
        self.seen_released.extend(batch)

    def replayed(self, batch: list[Executed]) -> None:
        pass

    def gateway_image(self, later: bool = False) -> dict[str, Any]:
        return {"private": {}, "last_exec_id": 0}

    def restore_gateway(self, image: dict[str, Any]) -> None:
        pass


def test_the_core_never_imports_the_gateway() -> None:
    for path in sorted((ROOT / "core").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"gateway", "client"}, (path, name)


def test_the_embedded_bus_is_the_sequencers_own_methods(tmp_path: Path) -> None:
    config = venue_config.load(SAMPLE_CONFIG)
    core = VenueCore(config, tmp_path, Recorder())
    try:
        bus = EmbeddedBus(core)
        assert bus.submit.__func__ is Sequencer.submit  # type: ignore[attr-defined]
        assert bus.submit.__self__ is core.sequencer  # type: ignore[attr-defined]
        assert bus.barrier.__self__ is core.sequencer  # type: ignore[attr-defined]
        assert bus.reads.venue is core.venue
    finally:
        core.store_thread.close()
        core.sequencer.close()


def test_a_core_tells_its_listener_as_commands_execute_and_once_durable(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        config = venue_config.load(SAMPLE_CONFIG)
        recorder = Recorder()
        listener: CoreListener = recorder
        core = VenueCore(config, tmp_path, listener)
        recorder.core = core
        bus = EmbeddedBus(core)
        await core.start()  # built from the config, through the same path
        built = len(recorder.seen_released)
        assert built == len(recorder.seen_executed) > 0
        origin = object()
        executed = bus.submit(CancelAll(account=1), origin)
        assert recorder.seen_executed[-1] is executed and len(recorder.seen_released) == built
        await bus.drain()
        assert recorder.seen_released[-1] is executed and executed.origin is origin
        assert recorder.durable_seq_when_released[-1] >= executed.seq
        await core.stop()

    asyncio.run(main())
