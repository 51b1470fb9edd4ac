"""The venue's websocket URLs as its clients take them: the example every refusal of one
quotes, and the check that a URL is one (the SDK's `VenueClient`, the command lines'
`--url`, `cli.failures.check_trade_url`). Standard library only: the command lines import
it at start."""

from urllib.parse import urlsplit

TRADE_PATH = "/ws/trade"
EXAMPLE_URL = f"ws://127.0.0.1:8765{TRADE_PATH}"  # `make run`'s
WEBSOCKET_SCHEMES = ("ws", "wss")


def is_websocket_url(url: str) -> bool:
    """Whether `url` is ws:// or wss:// (an http:// URL pasted from the REST line is not)."""
    return urlsplit(url).scheme in WEBSOCKET_SCHEMES


def websocket_url(url: str) -> str:
    """`url`, if it is a websocket URL; else a ValueError saying what one is (before session
    35 an http:// URL was taken, and `connect()` raised websockets' `InvalidURI` naming the
    `?pack=1` the client adds, which the caller never typed)."""
    if not is_websocket_url(url):
        raise ValueError(
            f"a venue's websocket URL is ws:// or wss://, such as {EXAMPLE_URL}, not {url!r}"
        )
    return url
