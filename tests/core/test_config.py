"""venue.toml: strict decoding, exact amounts, and the sample config builds a sound venue."""

import os
import threading
from pathlib import Path

import msgspec
import pytest

from core import config
from engine.events import CommandRejected
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
NOW_US = 1_798_761_600_000_000  # 2027-01-01
HOUR_US = 3_600_000_000


def test_the_sample_config_builds_a_venue_without_refusals() -> None:
    loaded = config.load(ROOT / "venue.toml")
    staleness = config.reserve_staleness_max_us(loaded)
    venue = Venue(VenueConfig(reserve_staleness_max_us=staleness), Ledger())
    for index, command in enumerate(config.setup_commands(loaded, NOW_US)):
        events = venue.execute(msgspec.structs.replace(command, ts_us=NOW_US + index))
        assert not any(isinstance(e, CommandRejected) for e in events), (command, events)
    venue.check_invariants()
    bill = venue.markets["TB-2027-03-04-USD"].spec
    assert (bill.price_decimals, bill.reference_price, bill.qty_decimals) == (6, 98_676_708, 0)
    assert bill.maturity_us == 1_804_118_400_000_000  # 2027-03-04 00:00 UTC
    apple = venue.markets["AAPLx-USD"].spec
    assert (apple.price_tick, apple.price_band_bps, apple.min_notional) == (1, 1_000, 1_000_000)
    assert "US" in apple.excluded_jurisdictions
    assert {key.key for key in loaded.api_keys} >= {"demo-mm-alpha", "demo-admin"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "venue.toml"
    path.write_text(text)
    return path


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="colour"):
        config.load(write(tmp_path, '[venue]\nport = 1\ncolour = "blue"\n'))


@pytest.mark.parametrize("interval_ms", [-1, 101])
def test_a_commit_interval_out_of_bounds_is_an_error(tmp_path: Path, interval_ms: int) -> None:
    with pytest.raises(config.ConfigError, match="commit_interval_ms"):
        config.load(write(tmp_path, f"[venue]\ncommit_interval_ms = {interval_ms}\n"))


def test_the_commit_interval_reaches_the_sequencer(tmp_path: Path) -> None:
    from core.venue_core import VenueCore
    from tests.core.test_bus import Recorder

    loaded = config.load(ROOT / "venue.toml")
    venue_section = msgspec.structs.replace(loaded.venue, commit_interval_ms=4)
    core = VenueCore(msgspec.structs.replace(loaded, venue=venue_section), tmp_path, Recorder())
    try:
        assert core.sequencer.commit_interval_s == 0.004
    finally:
        core.sequencer.close()
        core.store_thread.close()
        core._lock.close()


@pytest.mark.parametrize("on_loop", [True, False])
def test_where_the_file_journal_commits_reaches_the_sequencer(
    tmp_path: Path, on_loop: bool
) -> None:
    from core.venue_core import VenueCore
    from tests.core.test_bus import Recorder

    loaded = config.load(ROOT / "venue.toml")
    assert loaded.venue.commit_on_loop, "on the loop unless configured off"
    venue_section = msgspec.structs.replace(loaded.venue, commit_on_loop=on_loop)
    core = VenueCore(msgspec.structs.replace(loaded, venue=venue_section), tmp_path, Recorder())
    try:
        assert core.sequencer.commit_on_loop is on_loop
    finally:
        core.sequencer.close()
        core.store_thread.close()
        core._lock.close()


def test_a_commit_on_loop_that_is_not_a_boolean_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="commit_on_loop"):
        config.load(write(tmp_path, '[venue]\ncommit_on_loop = "yes"\n'))


def test_amounts_are_exact(tmp_path: Path) -> None:
    text = '[[assets]]\ncode = "USD"\nscale = 2\n[[reserves]]\nasset = "USD"\namount = "1.005"\n'
    loaded = config.load(write(tmp_path, text))
    with pytest.raises(config.ConfigError, match="more than 2 decimals"):
        config.setup_commands(loaded, NOW_US)


def test_an_instrument_needs_its_assets(tmp_path: Path) -> None:
    text = (
        '[[instruments]]\nsymbol = "X-USD"\nkind = "equity"\nbase = "X"\nquote = "USD"\n'
        'tick = "0.01"\nstep = "1"\nmin_qty = "1"\nmin_notional = "1"\nband_pct = "5"\n'
        'reference_price = "10"\n'
    )
    with pytest.raises(config.ConfigError, match="list the assets"):
        config.setup_commands(config.load(write(tmp_path, text)), NOW_US)


def bill_config(maturity: str, price: str = "96.000000") -> str:
    return (
        '[[assets]]\ncode = "USD"\nscale = 2\n[[assets]]\ncode = "TB-X"\nscale = 0\n'
        '[[instruments]]\nsymbol = "TB-X-USD"\nkind = "tbill"\nbase = "TB-X"\nquote = "USD"\n'
        'tick = "0.000001"\nstep = "100"\nmin_qty = "100"\nmin_notional = "50"\n'
        f'band_pct = "1"\nreference_price = "{price}"\nmaturity = {maturity}\n'
    )


@pytest.mark.parametrize(
    ("price", "words"),
    [
        ("100.000001", "above par (100.000000 per 100 of face)"),
        ("250", "above par"),
        ("49.999999", "below 50.000000 per 100 of face"),
        ("9.867671", "below 50.000000"),
    ],
)
def test_a_bill_price_that_cannot_be_right_is_an_error(
    tmp_path: Path, price: str, words: str
) -> None:
    """The finding: a bill listed at 250 per 100 of face (or 9.867671, a slipped point)
    started. The venue does not start on it, naming the entry."""
    path = write(tmp_path, bill_config("2027-03-04", price))
    with pytest.raises(config.ConfigError) as raised:
        config.load_to_build(path)
    assert "[[instruments]] 'TB-X-USD': reference_price" in str(raised.value)
    assert words in str(raised.value)
    for fine in ("100", "50", "99.5"):
        config.load_to_build(write(tmp_path, bill_config("2027-03-04", fine)))


def test_a_bill_maturing_more_than_366_days_out_is_an_error(tmp_path: Path) -> None:
    """The finding: such a bill was listed from the config, its yield null (or, once the
    engine refused it, the venue started without it, saying so in one warning). A date a
    year out is a mistyped one: the venue does not start on it."""
    longest = config.load(write(tmp_path, bill_config("2028-01-02")))  # 366 days from NOW_US
    assert len(config.setup_commands(longest, NOW_US)) == 3
    too_far = config.load(write(tmp_path, bill_config("2028-01-03")))
    with pytest.raises(config.ConfigError) as raised:
        config.setup_commands(too_far, NOW_US)
    assert str(raised.value) == (
        "TB-X-USD: matures 367 days after today (UTC), more than the 366 a T-bill may run"
        " (52-week bills run 364 days)"
    )


@pytest.mark.parametrize(
    "key", ["connection_rate_per_s", "connection_burst", "account_rate_per_s", "account_burst"]
)
@pytest.mark.parametrize("value", [0, -1])
def test_a_limit_below_one_is_an_error(tmp_path: Path, key: str, value: int) -> None:
    # it used to start, and every connection died on its first frame (an assertion)
    with pytest.raises(config.ConfigError, match=f"limits.{key}"):
        config.load(write(tmp_path, f"[limits]\n{key} = {value}\n"))


SAMPLE_TEXT = (ROOT / "venue.toml").read_text()
MM_BETA_ID = 'name = "mm-beta"'
APPLE = 'symbol = "AAPLx-USD"'
BILL_MATURITY = "maturity = 2027-03-04\n"


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("id = 2\n" + MM_BETA_ID, "id = 1\n" + MM_BETA_ID, ["[[accounts]] id 1", "twice"]),
        ('symbol = "MSFTx-USD"', APPLE, ["[[instruments]] symbol 'AAPLx-USD'", "twice"]),
        ('code = "MSFTx"', 'code = "AAPLx"', ["[[assets]] code 'AAPLx'", "twice"]),
        (
            'code = "MSFTx"',
            'code = "MSFTx"\nscale = 6\n\n[[assets]]\ncode = "usd"',
            ["[[assets]] code 'usd'", "'USD'", "only by case"],
        ),
        (
            'symbol = "MSFTx-USD"',
            'symbol = "aaplx-usd"',
            ["[[instruments]] symbol 'aaplx-usd'", "'AAPLx-USD'", "only by case"],
        ),
        (
            '[[reserves]]\nasset = "AAPLx"',
            '[[reserves]]\nasset = "USD"\namount = "1"\n\n[[reserves]]\nasset = "AAPLx"',
            ["[[reserves]] asset 'USD'", "twice"],
        ),
        ('band_pct = "10"', 'band_pct = "0"', ["'AAPLx-USD'", 'band_pct "0"']),
        ('band_pct = "10"', 'band_pct = "200"', ["'AAPLx-USD'", 'band_pct "200"']),
        (BILL_MATURITY, "", ["'TB-2027-03-04-USD'", "maturity"]),
        ("taker_fee_bps = 5", f"taker_fee_bps = 5\n{BILL_MATURITY}", ["'AAPLx-USD'", "maturity"]),
        ("taker_fee_bps = 5", "taker_fee_bps = -5", ["'AAPLx-USD'", "taker_fee_bps"]),
        ('base = "AAPLx"', 'base = "USD"', ["'AAPLx-USD'", "base and quote are both USD"]),
        (APPLE, 'symbol = "AAPLx USD"', ["'AAPLx USD'", "no spaces"]),
        ("taker_fee_bps = 5", 'taker_fee_bps = 5\nmax_qty = "0"', ["'AAPLx-USD'", 'max_qty "0"']),
        ("maker_fee_bps = 1", 'maker_fee_bps = 1\nmax_notional = "0.00"', ['max_notional "0']),
        (  # one lot, 100 of face, costs ~97.69 USD at the band's low
            BILL_MATURITY,
            f'{BILL_MATURITY}max_notional = "97"\n',
            ["'TB-2027-03-04-USD'", "97.689941, the smallest cap that allows one lot"],
        ),
        ("account = 2", "account = 77", ["key 'demo-mm-beta'", "account 77", "[[accounts]]"]),
        ('key = "demo-mm-beta"', 'key = "demo-mm-alpha"', ["key 'demo-mm-alpha'", "twice"]),
        (
            'scopes = ["read", "trade"]',
            'scopes = ["read", "trades"]',
            ["'demo-mm-alpha'", "trades"],
        ),
        ('scopes = ["read", "trade"]', "scopes = []", ["'demo-mm-alpha'", "scopes []"]),
        ('name = "mm-alpha"', 'name = "mm\\nalpha"', ["[[accounts]] id 1", "printable"]),
        ("id = 100", "id = 0", ["[[accounts]] id 0", "above 0"]),
    ],
)
def test_a_config_mistake_is_an_error_before_a_build_naming_the_entry(
    tmp_path: Path, old: str, new: str, words: list[str]
) -> None:
    """Each of these used to build a venue unlike the file (the second account 1 funded the
    first; "0" capped nothing; a key of no account), with at most a warning. A key's own
    mistakes stop every start (`load`); the build tables' stop a build (`load_to_build`, and
    `setup_commands` for a venue about to be built), not a venue that exists (which ignores
    them)."""
    assert old in SAMPLE_TEXT
    path = write(tmp_path, SAMPLE_TEXT.replace(old, new, 1))
    with pytest.raises(config.ConfigError) as raised:
        config.load_to_build(path)
    for word in [str(path), *words]:
        assert word in str(raised.value)
    if "[[api_keys]]" in old or "scopes" in old or "key =" in old:
        return  # what every start reads
    loaded = config.load(path)  # a venue that exists takes the file
    with pytest.raises(config.ConfigError) as building:
        config.setup_commands(loaded, NOW_US)
    assert all(word in str(building.value) for word in words), building.value


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('asset = "AAPLx"', 'asset = "ZZZ"', ["[[reserves]]: unknown asset ZZZ", "codes: USD,"]),
        ('amount = "100000"', 'amount = "1.5x"', ["[[reserves]]: AAPLx amount: '1.5x'"]),
        (
            'deposits = { USD = "5000000"',
            'deposits = { ZZZ = "1", USD = "5000000"',
            ["[[accounts]] id 1: deposits: unknown asset ZZZ", "SPYx, TB-2027-03-04"],
        ),
        (
            'deposits = { USD = "5000000"',
            'deposits = { USD = "5.0000001"',
            ["[[accounts]] id 1: deposits: USD amount:"],
        ),
    ],
)
def test_an_amount_of_a_build_table_that_cannot_be_booked_names_its_table(
    tmp_path: Path, old: str, new: str, words: list[str]
) -> None:
    """The finding (session 28): a reserve or a deposit in an asset no `[[assets]]` entry
    lists, or an amount it cannot hold, was refused as `unknown asset ZZZ` or `USD amount:
    ...` alone, leaving the operator to search a file of dozens of entries for it."""
    assert old in SAMPLE_TEXT
    loaded = config.load(write(tmp_path, SAMPLE_TEXT.replace(old, new, 1)))
    with pytest.raises(config.ConfigError) as building:
        config.setup_commands(loaded, NOW_US)
    for word in words:
        assert word in str(building.value)


def test_deposits_beyond_the_reserves_are_an_error_before_the_build(tmp_path: Path) -> None:
    text = SAMPLE_TEXT.replace('deposits = { USD = "5000000"', 'deposits = { USD = "50000000"', 1)
    loaded = config.load(write(tmp_path, text))
    with pytest.raises(config.ConfigError, match=r"deposit account 1 .*RESERVES_EXCEEDED"):
        config.setup_commands(loaded, NOW_US)
    config.setup_commands(loaded, NOW_US, building=False)  # a venue that exists: not rebuilt


def test_a_matured_bill_is_left_out_with_its_asset_reserves_and_deposits() -> None:
    """The finding: a bill matured since the config was written was left out of the build
    (its listing refused, MATURITY_PASSED), but its token was still listed, attested and
    minted to the accounts: tokens of no market, that no maturity would ever redeem. The
    venue now starts like the file without that bill: its token goes with it."""
    loaded = config.load(ROOT / "venue.toml")
    bill = next(e for e in loaded.instruments if e.symbol == "TB-2027-03-04-USD")
    after = 1_804_118_400_000_000  # 2027-03-04 00:00 UTC: matured
    left = config.matured_bills(loaded, after)
    assert left == [
        config.LeftOut(
            symbol=bill.symbol,
            maturity=bill.maturity,
            asset=bill.base,
            reserves=True,
            deposit_accounts=(1, 2, 3, 4),
        )
    ]
    assert left[0].detail() == (
        "TB-2027-03-04-USD matured on 2027-03-04 (00:00 UTC), before this build: it would"
        " never trade. Left out with it: its asset TB-2027-03-04, that asset's [[reserves]]"
        " and its deposits to accounts 1, 2, 3, 4"
    )
    commands = config.setup_commands(loaded, after)
    named = {getattr(c, "asset", None) or getattr(c, "code", None) for c in commands}
    assert bill.base not in named
    assert bill.symbol not in {c.spec.symbol for c in commands if hasattr(c, "spec")}
    everything = config.setup_commands(loaded, NOW_US)
    assert len(everything) - len(commands) == 1 + 1 + 1 + 4  # listing, asset, reserves, deposits
    venue = Venue(VenueConfig(reserve_staleness_max_us=HOUR_US), Ledger())
    for command in commands:
        events = venue.execute(msgspec.structs.replace(command, ts_us=after))
        assert not any(isinstance(e, CommandRejected) for e in events), (command, events)
    assert venue.ledger is not None and bill.base not in venue.ledger.assets
    assert "TB-2027-08-26-USD" in venue.markets  # the other bill has not matured
    assert config.matured_bills(loaded, after - 1) == []


def test_a_matured_bill_leaves_its_asset_when_another_instrument_names_it(
    tmp_path: Path,
) -> None:
    text = bill_config("2027-03-04") + (
        '[[assets]]\ncode = "X"\nscale = 2\n'
        '[[instruments]]\nsymbol = "X-TB"\nkind = "equity"\nbase = "X"\nquote = "TB-X"\n'
        'tick = "1"\nstep = "1"\nmin_qty = "1"\nmin_notional = "1"\nband_pct = "5"\n'
        'reference_price = "10"\n'
        '[[reserves]]\nasset = "TB-X"\namount = "1000"\n'
    )
    loaded = config.load(write(tmp_path, text))
    after = 1_804_118_400_000_000
    (left,) = config.matured_bills(loaded, after)
    assert (left.kept_by, left.reserves, left.deposit_accounts) == ("X-TB", False, ())
    assert left.detail().endswith("Left out alone: its asset TB-X stays, as X-TB names it")
    commands = config.setup_commands(loaded, after)
    assert [c.code for c in commands if hasattr(c, "code")] == ["USD", "TB-X", "X"]
    assert [c.spec.symbol for c in commands if hasattr(c, "spec")] == ["X-TB"]


def test_trusted_proxies_name_ips_or_networks(tmp_path: Path) -> None:
    """A typo in `[limits] trusted_proxies` would otherwise trust nobody, or the wrong host."""
    listed = '[limits]\ntrusted_proxies = ["10.0.0.1", "192.168.0.0/16", "::1"]\n'
    assert (
        len(config.trusted_networks(config.load(write(tmp_path, listed)).limits.trusted_proxies))
        == 3
    )
    with pytest.raises(config.ConfigError, match=r"trusted_proxies: '10\.0\.0\.300'"):
        config.load(write(tmp_path, '[limits]\ntrusted_proxies = ["10.0.0.300"]\n'))


@pytest.mark.parametrize("value", [-1, 91])
def test_a_connections_reserve_out_of_range_is_an_error(tmp_path: Path, value: int) -> None:
    """`[limits] connections_reserved_pct` is 0 to 90: above, market data would hardly get
    a connection (at 100, none); below 0 is meaningless."""
    with pytest.raises(config.ConfigError, match=r"limits\.connections_reserved_pct"):
        config.load(write(tmp_path, f"[limits]\nconnections_reserved_pct = {value}\n"))
    loaded = config.load(write(tmp_path, "[limits]\nconnections_reserved_pct = 90\n"))
    assert loaded.limits.connections_reserved_pct == 90


@pytest.mark.parametrize("value", [0, 1001])
def test_a_pending_allowance_out_of_range_is_an_error(tmp_path: Path, value: int) -> None:
    """`[limits] pending_per_ip_max` is 1 to 1,000: 0 would refuse every `/ws/trade`
    connection while the public places are full; above, the allowance guards nothing."""
    with pytest.raises(config.ConfigError, match=r"limits\.pending_per_ip_max"):
        config.load(write(tmp_path, f"[limits]\npending_per_ip_max = {value}\n"))
    assert config.load(write(tmp_path, "[limits]\n")).limits.pending_per_ip_max == 8
    loaded = config.load(write(tmp_path, "[limits]\npending_per_ip_max = 1000\n"))
    assert loaded.limits.pending_per_ip_max == 1000


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("https://[::1", "its IPv6 address has no closing ']'"),
        ("https://bücher.example", "its host is not ASCII: list it in punycode (xn--...)"),
        ("https://app.example.com.", "its host has an empty label (a trailing dot, or '..')"),
        ("https://app..example.com", "its host has an empty label (a trailing dot, or '..')"),
        ("https://app.example.com\\", "no path, no trailing slash"),  # a browser's '/'
        ("https://app\\example.com", "no path, no trailing slash"),
        ("https://app%2Eexample.com", "no %-escapes nor IPv6 zones"),
        ("http://[fe80::1%25eth0]", "no %-escapes nor IPv6 zones"),
        ("https://[::g]", "its host is not an IPv6 address"),
        ("https://app^example.com", "its host has '^': letters, digits, '-', '_' and dots"),
        ("http://127.1", "its host is not an IPv4 address as browsers write it"),
        ("http://0x7f.0.0.1", "its host is not an IPv4 address as browsers write it"),
        ("http://1.2.3.999", "its host is not an IPv4 address as browsers write it"),
    ],
)
def test_a_cors_origin_no_browser_sends_is_refused_naming_it(entry: str, words: str) -> None:
    """Review of session 26: these were let through, each an origin that never matches a
    browser's `Origin` ('https://[::1' even became 'https://[::1]'); now refused at load,
    naming the entry and why."""
    with pytest.raises(ValueError) as refused:
        config.cors_origin(entry)
    assert str(refused.value).startswith(f"{entry!r} is not an origin"), str(refused.value)
    assert words in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    ("entry", "origin"),
    [
        ("http://[0:0:0:0:0:0:0:1]:8080", "http://[::1]:8080"),
        ("https://[2001:DB8:0:0::1]", "https://[2001:db8::1]"),
        ("http://[::FFFF:127.0.0.1]", "http://[::ffff:7f00:1]"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        ("http://my_host.local:3000", "http://my_host.local:3000"),
        ("http://10.0.0.1", "http://10.0.0.1"),
    ],
)
def test_a_cors_origin_is_kept_as_browsers_serialize_it(entry: str, origin: str) -> None:
    """An IPv6 host compressed and lower case, as a browser writes it (before: kept as typed,
    so `[0:0:0:0:0:0:0:1]` never matched the `[::1]` a browser sends)."""
    assert config.cors_origin(entry) == origin


@pytest.mark.parametrize("key", ["connection_burst", "account_burst"])
@pytest.mark.parametrize("value", [1, 99])
def test_a_burst_that_cannot_hold_the_dearest_request_is_an_error(
    tmp_path: Path, key: str, value: int
) -> None:
    """A bucket must hold the dearest valid request (a quote.mass of 100 quotes, 100 tokens),
    or that request is refused forever. A burst of 1 to 99 loaded, and `venue serve` then
    stopped with an AssertionError's traceback from the rate limiter (docs/configuration.md
    said "at least 1"); it is refused at load, naming the key."""
    from gateway import limits  # the gateway's bucket is what the bound protects

    dearest_tokens = limits.REQUEST_COST_MILLI_MAX // limits.MILLI
    assert dearest_tokens == 100
    with pytest.raises(config.ConfigError, match=rf"limits\.{key}"):
        config.load(write(tmp_path, f"[limits]\n{key} = {value}\n"))
    loaded = config.load(write(tmp_path, f"[limits]\n{key} = {dearest_tokens}\n"))
    bursts = {"connection_burst": loaded.limits.connection_burst}
    bursts["account_burst"] = loaded.limits.account_burst
    assert getattr(limits.RateLimiter(**bursts), key) == dearest_tokens


@pytest.mark.parametrize("account", [0, -1])
def test_a_key_of_no_participants_account_stops_every_start_naming_the_key(
    tmp_path: Path, account: int
) -> None:
    """A participant's account id is above 0. A `[[api_keys]]` entry of account 0 (or the
    venue's own, negative) passed `load`, so a venue that exists started with it: its logon
    closed 1006 with the rate limiter's AssertionError, its REST requests were dropped. Now
    every start refuses the entry, naming the key (re-review of session 31)."""
    text = SAMPLE_TEXT.replace("account = 2", f"account = {account}", 1)
    with pytest.raises(config.ConfigError) as raised:
        config.load(write(tmp_path, text))
    for word in ["key 'demo-mm-beta'", f"account {account}", "above 0"]:
        assert word in str(raised.value), raised.value


def test_a_fifo_no_one_writes_to_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """Session 32's sweep: `--config` naming a FIFO that nothing writes to (a named pipe, a
    `<(...)` already read) blocked the open for ever, without a word, in every command that
    reads one. The load runs in a thread here, so that a hang fails the test rather than
    hanging it; a writer opened afterwards lets such a blocked open go."""
    fifo = tmp_path / "venue.toml"
    os.mkfifo(fifo)
    refused: list[str] = []

    def load() -> None:
        try:
            config.load(fifo)
        except config.ConfigError as error:
            refused.append(str(error))

    loading = threading.Thread(target=load, daemon=True)
    loading.start()
    loading.join(timeout=30)  # a bound on a hang, not a timing assertion
    if loading.is_alive():  # the open blocked: unblock it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        loading.join()
        pytest.fail("config.load blocked on a FIFO")
    assert refused == [f"{fifo}: a pipe with no writer and nothing in it: {config.GIVE_CONFIG}"]


def _pipe_written(text: bytes) -> tuple[Path, threading.Thread]:
    """`/dev/fd/N` of a pipe a thread writes `text` into (blocking while the pipe is full,
    so the reader finds it empty with a writer there), then closes: `--config <(...)`."""
    read_end, write_end = os.pipe()

    def writer() -> None:
        left = memoryview(text)
        try:
            while left:
                left = left[os.write(write_end, left) :]
        except BrokenPipeError:  # the reader stopped reading (a config past its limit)
            pass
        finally:
            os.close(write_end)

    writing = threading.Thread(target=writer, daemon=True)
    writing.start()
    path = Path(f"/dev/fd/{read_end}")
    return path, writing


def test_a_config_from_a_pipe_with_its_writer_is_read_whole(tmp_path: Path) -> None:
    """The reviewer of session 32: refusing every pipe refused `venue serve --config
    <(sops -d venue.toml)` and `--config /dev/stdin < <(...)`, which worked before. A pipe
    with a writer is read as it comes; past the pipe's 64 KiB buffer here, so the writer
    blocks and the reader waits on it more than once."""
    padded = SAMPLE_TEXT + "# padding, a comment line of a generated config\n" * 4_000
    path, writing = _pipe_written(padded.encode())
    try:
        loaded = config.load(path)
    finally:
        os.close(int(path.name))  # (a writer still blocked on a full pipe then ends)
        writing.join(timeout=30)  # a bound, not a timing assertion
    assert loaded == config.load(write(tmp_path, padded))


def test_a_config_from_a_pipe_is_read_once_and_loaded_again_from_memory(
    tmp_path: Path,
) -> None:
    """Session 32's whole-diff review: `venue admin`, the bots and the demo load their config
    twice (the URL, then the key), and a pipe's second read found it empty: "a pipe with no
    writer and nothing in it" though it had one and was read a moment before."""
    path, writing = _pipe_written(SAMPLE_TEXT.encode())
    try:
        first = config.load(path)
        again = config.load(path)  # the same pipe, its writer gone: kept from the first read
    finally:
        os.close(int(path.name))
        writing.join(timeout=30)
    assert first == again == config.load(write(tmp_path, SAMPLE_TEXT))


def test_a_pipe_past_the_size_limit_or_whose_writer_never_ends_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipe is held to the file's bounds: read to one byte past `CONFIG_BYTES_MAX`, and
    waited on for at most `CONFIG_PIPE_WAIT_S` (here a writer that writes nothing and holds
    its end open until the load has given up)."""
    monkeypatch.setattr(config, "CONFIG_BYTES_MAX", 100)
    path, writing = _pipe_written(b"# padding\n" * 20_000)  # blocks, full, until closed
    with pytest.raises(config.ConfigError, match="over 100 bytes: no venue's config is"):
        config.load(path)
    os.close(int(path.name))  # the writer's next write fails: it ends
    writing.join(timeout=30)
    monkeypatch.setattr(config, "CONFIG_PIPE_WAIT_S", 0.05)
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(config.ConfigError, match=r"writer did not finish within 0\.05 s"):
            config.load(Path(f"/dev/fd/{read_end}"))
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_given_as_the_config_is_refused_unread(device: str) -> None:
    with pytest.raises(config.ConfigError, match="a device or a socket, not a file"):
        config.load(Path(device))


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("missing.toml", "No such file or directory: give the venue's TOML file with --config"),
        ("a-directory", "a directory, not a file: give the venue's TOML file with --config"),
    ],
)
def test_a_config_that_is_no_file_says_what_to_give(tmp_path: Path, name: str, why: str) -> None:
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(config.ConfigError) as raised:
        config.load(tmp_path / name)
    assert str(raised.value).startswith(f"{tmp_path / name}: {why}")


def test_a_config_past_its_size_limit_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = write(tmp_path, "# padding\n" * 20)
    monkeypatch.setattr(config, "CONFIG_BYTES_MAX", 100)
    with pytest.raises(config.ConfigError, match="over 100 bytes: no venue's config is"):
        config.load(big)


@pytest.mark.parametrize("text", ["", "\n  \n", "# the venue's config\n[venue]\nport = 9000\n"])
def test_a_config_of_no_asset_and_no_instrument_builds_nothing(tmp_path: Path, text: str) -> None:
    """Session 32's sweep: `venue serve --config` of a file truncated to nothing (or of only
    comments: the reviewer) built a venue of nothing (no asset, no instrument) into a new
    data directory and served it. A build refuses it; a venue that exists may still start
    with such a file (its build tables are read once)."""
    path = write(tmp_path, text)
    refused = f"{path}: no [[assets]] and no [[instruments]]: a venue built from it would"
    with pytest.raises(config.ConfigError) as raised:
        config.load_to_build(path)
    assert str(raised.value).startswith(refused), raised.value
    loaded = config.load(path)
    with pytest.raises(config.ConfigError, match=r"no \[\[assets\]\] and no \[\[instr"):
        config.setup_commands(loaded, NOW_US)  # what `venue serve` and a core build from
    assert config.setup_commands(loaded, NOW_US, building=False) == []
