"""Where a client command (`venue admin`, `venue bot ...`) finds the venue when it is given
no `--url`: the trade endpoint at its config's `[venue]` host and port, where `venue serve`
with that config listens (before session 30, always port 8765, whatever the file said).
"""

from pathlib import Path

from client.urls import EXAMPLE_URL, TRADE_PATH
from core import config as venue_config

URL_DEFAULT = EXAMPLE_URL  # the default config's: no config, or port 0
# Addresses a server binds to listen on every interface: a client reaches it on loopback.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def config_trade_url(path: Path) -> str:
    """The trade endpoint of the venue `path` configures (a wildcard host by loopback, an
    IPv6 one in brackets). `URL_DEFAULT` when the file is missing or unreadable (the step
    that reads it for its own needs names the fault) or its port is 0 (any free one: only
    `venue serve`'s own line says which)."""
    try:
        section = venue_config.load(path).venue
    except venue_config.ConfigError:
        return URL_DEFAULT
    if section.port == 0:
        return URL_DEFAULT
    host = WILDCARD_HOSTS.get(section.host, section.host)
    address = f"[{host}]" if ":" in host else host
    return f"ws://{address}:{section.port}{TRADE_PATH}"
