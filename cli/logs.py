"""The server's log: levels, and one line per record as text or as a JSON object.

Owns the two formats of `venue serve --log-format`: `text` (time, level, logger, message,
then `key=value` for each structured field) and `json` (one object per line: `ts`, `level`,
`logger`, `msg` and the structured fields). Structured fields are the `extra=` of a logging
call; callers on busy paths check `isEnabledFor` before building them, so a disabled level
costs one comparison. What is logged is the callers' (`gateway`, `core.venue_core`,
`core.snapshots`).
"""

import datetime
import json
import logging
import sys
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
# Every attribute a bare LogRecord has: whatever else a record carries came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record was logged with (its `extra=`)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601), level, logger, msg, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`<ts> <LEVEL> <logger> <msg> key=value ...`: for a terminal and grep."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        extra = " ".join(f"{key}={_text(value)}" for key, value in fields(record).items())
        if extra:
            text = f"{text} {extra}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def _text(value: Any) -> str:
    """A field's value as written: bare if it is one printable word, else as JSON (quoted,
    control characters escaped): a value from a client (a header read as Latin-1 may hold C1
    controls) must not break the line or reach a terminal as an escape sequence."""
    if isinstance(value, str) and value.isprintable() and " " not in value and "=" not in value:
        return value or '""'
    return json.dumps(value, default=str, separators=(",", ":"))


def configure(level: str = "info", format: str = "text") -> None:
    """Send every logger's records at `level` and above to stderr in `format`."""
    if level not in LEVELS or format not in FORMATS:
        raise ValueError(f"log level {level!r} of {LEVELS}, format {format!r} of {FORMATS}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The library's own lines (each connection, each frame at debug) repeat ours without
    # the account; its warnings and errors still come through.
    logging.getLogger("websockets").setLevel(logging.WARNING)
