"""venue.toml as the tests use it: its T-bills rolled forward once they come close to maturing.

The sample config lists real-dated bills, and the venue refuses at start a bill whose maturity
has passed (MATURITY_PASSED): tests that trade, list or query the bills would start failing
on a calendar date. Tests load `SAMPLE_CONFIG` instead. While venue.toml's earliest bill
matures more than `RUNWAY_DAYS` after today it is venue.toml itself; later it is a copy in
which every bill's date moves forward by the same whole number of weeks (bills keep maturing
on their weekday, 364 days or less away, and every other line is unchanged). `sample_bill(name)`
maps a symbol or asset written in venue.toml to its name in `SAMPLE_CONFIG`.
"""

import atexit
import datetime
import re
import shutil
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENUE_TOML = ROOT / "venue.toml"
RUNWAY_DAYS = 28  # a test run never sees a sample bill mature, nor the roll change under it
WEEK_DAYS = 7


def bill_dates(text: str) -> list[datetime.date]:
    """The maturities of the config's T-bills, earliest first."""
    instruments = tomllib.loads(text).get("instruments", [])
    return sorted(entry["maturity"] for entry in instruments if entry.get("kind") == "tbill")


def roll_weeks(dates: list[datetime.date], today: datetime.date) -> int:
    """Whole weeks to move every bill by so the earliest matures `RUNWAY_DAYS` or more ahead."""
    if not dates:
        return 0
    short_days = (today + datetime.timedelta(days=RUNWAY_DAYS) - dates[0]).days
    return max(0, -(-short_days // WEEK_DAYS))


def rolled(text: str, today: datetime.date) -> tuple[str, dict[str, str]]:
    """`text` with its bills' dates moved forward, and each old date's new one (isoformat)."""
    weeks = roll_weeks(bill_dates(text), today)
    moves = {
        date.isoformat(): (date + datetime.timedelta(weeks=weeks)).isoformat()
        for date in bill_dates(text)
    }
    return _renamed(text, moves), moves


def _renamed(text: str, moves: dict[str, str]) -> str:
    """Every old date replaced in one pass: a bill moved onto another's old date stays apart."""
    if not moves:
        return text
    pattern = re.compile("|".join(map(re.escape, moves)))
    return pattern.sub(lambda match: moves[match.group()], text)


def _write_sample() -> tuple[Path, dict[str, str]]:
    today = datetime.datetime.now(datetime.UTC).date()
    text, moves = rolled(VENUE_TOML.read_text(), today)
    if all(old == new for old, new in moves.items()):
        return VENUE_TOML, moves
    directory = Path(tempfile.mkdtemp(prefix="venue-sample-config-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "venue.toml"
    path.write_text(text)
    return path, moves


SAMPLE_CONFIG, _MOVES = _write_sample()


def sample_bill(name: str) -> str:
    """A bill's symbol or asset code as venue.toml writes it, renamed as in `SAMPLE_CONFIG`."""
    return _renamed(name, _MOVES)
