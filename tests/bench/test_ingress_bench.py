"""`python -m bench.ingress_bench` at a few requests: every kind is answered without an error
and measured (never timed)."""

from bench import ingress_bench, server_process
from tests.sample_config import SAMPLE_CONFIG


def test_every_kind_is_answered_and_measured() -> None:
    count = 2 * ingress_bench.WINDOW
    kinds = list(ingress_bench.KINDS)
    result = server_process.run_async(ingress_bench.measure(count, kinds, False, SAMPLE_CONFIG))
    assert result["errors"] == 0, "a refusal would measure another path than the e2e mix"
    for kind in kinds:
        figures = result[kind]
        assert figures["process_us_per_request"] > 0
        assert figures["ingress_us_per_request"] > 0


def test_the_frames_are_masked_client_frames() -> None:
    frame = ingress_bench.masked(b'{"id":1}')
    assert frame[0] == 0x81 and frame[1] == 0x80 | 8  # FIN text, masked, 8 bytes


def test_bytecodes_are_counted_per_request_in_the_feeding_and_the_release() -> None:
    result = server_process.run_async(
        ingress_bench.measure(ingress_bench.WINDOW, ["quote"], False, SAMPLE_CONFIG, True)
    )
    figures = result["quote"]
    assert figures["bytecodes_per_request"] > figures["outside_engine_per_request"] > 0
    top = figures["top"]
    assert "gateway/dispatch.py:_quote_mass" in top, "the feeding"
    assert "gateway/server.py:_answer_and_push" in top, "the release of what was fed"
    assert "gateway/sessions.py:fan_out_all" in top, "its pushes, queued for the makers' sessions"
    assert not any(name.startswith(("engine/", "bench/")) for name in top)
