"""The ledger store's thread: gathers durable batches, keeps their order, pushes back."""

import threading
from concurrent.futures import Future

import pytest

from core import store_thread
from core.store_thread import StoreThread


class Recorder:
    """A `write` that records what it got, and can be held back."""

    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.go = threading.Event()
        self.go.set()
        self.entered = threading.Event()

    def written_batches(self) -> list[int]:
        return [batch for write in self.writes for batch in write]

    def written(self) -> int:
        return len(self.written_batches())

    def __call__(self, batches: list[int]) -> None:
        self.entered.set()
        self.go.wait()
        self.writes.append(batches)


def test_batches_arriving_together_are_written_together_in_order() -> None:
    recorder = Recorder()
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=60.0)
    for batch in range(10):
        thread.book(batch)
    done = thread.call(lambda: "after")  # a call ends the gathering at once: no 60 s wait
    assert done.result(timeout=10) == "after"
    assert recorder.writes == [list(range(10))]  # one write, every batch, oldest first
    thread.close()


def test_a_call_runs_after_every_batch_booked_before_it() -> None:
    recorder = Recorder()
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=0.0)
    seen: list[int] = []
    futures: list[Future[None]] = []
    for batch in range(50):
        thread.book(batch)
        futures.append(thread.call(lambda: seen.append(recorder.written())))
    for future in futures:
        future.result(timeout=10)
    assert seen == list(range(1, 51))
    thread.close()


def test_close_writes_what_is_queued() -> None:
    recorder = Recorder()
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=60.0)
    thread.book(1)
    thread.book(2)
    thread.close()
    assert recorder.writes == [[1, 2]]
    thread.close()  # twice is harmless


def test_a_full_queue_holds_back_the_booker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_thread, "QUEUE_COMMANDS_MAX", 3)
    recorder = Recorder()
    recorder.go.clear()  # the store is stuck in a write
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=0.0)
    thread.book(0)
    assert recorder.entered.wait(10)
    for batch in (1, 2, 3):
        thread.book(batch)  # the queue holds 3
    blocked = threading.Thread(target=thread.book, args=(4,))
    blocked.start()
    blocked.join(timeout=0.3)
    assert blocked.is_alive(), "a fourth waiting batch must wait for the store"
    recorder.go.set()
    blocked.join(timeout=10)
    assert not blocked.is_alive()
    thread.close()
    assert recorder.written_batches() == [0, 1, 2, 3, 4]


def test_the_queue_is_bounded_by_the_commands_its_batches_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_thread, "QUEUE_COMMANDS_MAX", 10)
    recorder = Recorder()
    recorder.go.clear()  # the store is stuck in a write
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=0.0)
    thread.book(0)
    assert recorder.entered.wait(10)
    thread.book(1, commands=6)
    thread.book(2, commands=4)  # 10 commands wait: room for no more
    blocked = threading.Thread(target=thread.book, args=(3, 1))
    blocked.start()
    blocked.join(timeout=0.3)
    assert blocked.is_alive(), "an eleventh waiting command must wait for the store"
    recorder.go.set()
    blocked.join(timeout=10)
    assert not blocked.is_alive()
    thread.close()
    assert recorder.written_batches() == [0, 1, 2, 3]


def test_a_quiet_venues_small_batches_wait_a_store_outage_out_unblocked() -> None:
    """A quiet venue commits one or two commands a batch: 1,500 of them (~6 s at ~250
    commands a second) while the store is stuck (a PostgreSQL restart) must not hold the
    booker, the event loop (a bound of 1,000 batches froze it for the rest of the outage)."""
    recorder = Recorder()
    recorder.go.clear()
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=0.0)
    thread.book(0)
    assert recorder.entered.wait(10)
    booker = threading.Thread(target=lambda: [thread.book(b, 2) for b in range(1, 1_501)])
    booker.start()
    booker.join(timeout=10)
    assert not booker.is_alive(), "the booker waited for a stuck store with room to spare"
    recorder.go.set()
    thread.close()
    assert recorder.written_batches() == list(range(1_501))


def test_a_failed_write_is_fatal_and_refuses_more() -> None:
    failures: list[BaseException] = []

    def broken(batches: list[int]) -> None:
        raise OSError("disk full")

    thread: StoreThread[int] = StoreThread(broken, failures.append, gather_s=0.0)
    thread.book(1)
    thread._thread.join(timeout=10)
    assert [str(f) for f in failures] == ["the ledger store failed: OSError: disk full"]
    assert [type(f.__cause__) for f in failures] == [OSError]
    with pytest.raises(RuntimeError, match="failed"):
        thread.book(2)
    with pytest.raises(RuntimeError, match="failed: OSError\\('disk full'\\)"):
        thread.call(lambda: None).result(timeout=10)
    thread.close()


def test_calls_queued_behind_a_failed_write_fail_with_it() -> None:
    """Calls waiting in the thread's gathering or queue when a write fails are answered with
    the failure, not left pending (an `await` on them would hang the venue's stop)."""
    failures: list[BaseException] = []
    go, entered = threading.Event(), threading.Event()

    def broken(batches: list[int]) -> None:
        entered.set()
        go.wait()
        raise OSError("disk full")

    thread: StoreThread[int] = StoreThread(broken, failures.append, gather_s=0.0)
    thread.book(1)
    assert entered.wait(10)  # the thread is inside the write that will fail
    thread.book(2)
    queued = [thread.call(lambda: "never"), thread.call(lambda: "never")]
    go.set()
    for future in queued:
        with pytest.raises(RuntimeError, match="failed: OSError"):
            future.result(timeout=10)
    later = thread.call(lambda: "never")
    with pytest.raises(RuntimeError, match="failed: OSError"):
        later.result(timeout=10)
    assert len(failures) == 1
    thread.close()


def test_a_book_after_close_is_refused_at_once() -> None:
    recorder = Recorder()
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=0.0)
    thread.close()
    with pytest.raises(RuntimeError, match="stopped"):
        thread.book(1)
    with pytest.raises(RuntimeError, match="stopped"):
        thread.call(lambda: None).result(timeout=10)


def test_a_booker_waiting_for_room_is_refused_when_the_write_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_thread, "QUEUE_COMMANDS_MAX", 2)
    go, entered = threading.Event(), threading.Event()

    def broken(batches: list[int]) -> None:
        entered.set()
        go.wait()
        raise OSError("disk full")

    thread: StoreThread[int] = StoreThread(broken, [].append, gather_s=0.0)
    thread.book(0)
    assert entered.wait(10)
    thread.book(1)
    thread.book(2)
    refused: list[BaseException] = []

    def book() -> None:
        try:
            thread.book(3)
        except RuntimeError as error:
            refused.append(error)

    blocked = threading.Thread(target=book, daemon=True)
    blocked.start()
    go.set()
    blocked.join(timeout=10)
    assert not blocked.is_alive() and len(refused) == 1
    thread.close()


def test_a_failed_call_fails_its_caller_only() -> None:
    recorder = Recorder()
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=0.0)
    with pytest.raises(ZeroDivisionError):
        thread.call(lambda: 1 / 0).result(timeout=10)
    thread.book(7)
    assert thread.call(lambda: 2).result(timeout=10) == 2
    assert recorder.writes == [[7]]
    thread.close()


def test_a_full_gathering_is_written_without_waiting_out_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_thread, "GATHER_BATCHES_MAX", 4)
    recorder = Recorder()
    thread: StoreThread[int] = StoreThread(recorder, [].append, gather_s=60.0)
    for batch in range(4):
        thread.book(batch)
    assert recorder.entered.wait(10), "a full gathering must not wait 60 s"
    thread.close()
    assert recorder.writes == [[0, 1, 2, 3]]
