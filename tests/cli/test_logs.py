"""The log formats: JSON objects with ts, level, logger, msg and the fields; text with k=v."""

import json
import logging
from collections.abc import Iterator

import pytest

from cli import logs


def record(msg: str, *args: object, **fields: object) -> logging.LogRecord:
    made = logging.LogRecord("venue", logging.INFO, __file__, 1, msg, args, None)
    made.__dict__.update(fields)  # as `extra=` sets them
    return made


def test_json_is_one_object_with_the_fields() -> None:
    line = logs.JsonFormatter().format(record("logged on %s", "now", account=3, peer="h:1"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["ts"].endswith("Z") and "T" in parsed["ts"]
    assert parsed["level"] == "info" and parsed["logger"] == "venue"
    assert parsed["msg"] == "logged on now"
    assert parsed["account"] == 3 and parsed["peer"] == "h:1"


def test_text_appends_fields_as_key_value() -> None:
    line = logs.TextFormatter().format(
        record("rejects", rejects={"price_out_of_band": 2}, note="two words")
    )
    assert " INFO venue rejects " in line
    assert line.endswith('rejects={"price_out_of_band":2} note="two words"')


def test_text_escapes_a_field_that_holds_control_characters() -> None:
    """Found in session 23: a field was written as it came when it had no space and no `=`,
    so an `X-API-Key` header of obs-text bytes (read as Latin-1: C1 controls) reached the log
    of a refused REST request raw: U+0085 (a line break to many readers) and U+009B (CSI,
    a terminal's escape) forged lines and colours. Such a field is written as JSON now."""
    key = "evil\x85\x9b2J\x9b31mFORGED\x1b[0m\u2028x"
    line = logs.TextFormatter().format(record("rest request refused", api_key=key, code="b"))
    assert line.endswith('api_key="evil\\u0085\\u009b2J\\u009b31mFORGED\\u001b[0m\\u2028x" code=b')
    assert line.isprintable() and len(line.splitlines()) == 1


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(logging.NOTSET)


@pytest.mark.usefixtures("restore_root")
def test_configure_sets_the_level_so_disabled_records_cost_nothing() -> None:
    logs.configure("warning", "json")
    venue = logging.getLogger("venue")
    assert not venue.isEnabledFor(logging.INFO)
    assert venue.isEnabledFor(logging.WARNING)
    assert isinstance(logging.getLogger().handlers[0].formatter, logs.JsonFormatter)
    with pytest.raises(ValueError, match="loud"):
        logs.configure("loud", "text")
