"""`cli.venue_url`: the venue a client command goes to with no `--url`."""

from pathlib import Path

from cli.venue_url import URL_DEFAULT, config_trade_url
from tests.sample_config import SAMPLE_CONFIG


def _config_at(tmp_path: Path, host: str, port: int) -> Path:
    text = SAMPLE_CONFIG.read_text()
    text = text.replace('host = "127.0.0.1"', f'host = "{host}"', 1)
    text = text.replace("port = 8765", f"port = {port}", 1)
    path = tmp_path / "venue.toml"
    path.write_text(text)
    return path


def test_the_configs_host_and_port_name_the_trade_endpoint(tmp_path: Path) -> None:
    at = config_trade_url(_config_at(tmp_path, "127.0.0.1", 21601))
    assert at == "ws://127.0.0.1:21601/ws/trade"


def test_a_wildcard_host_is_reached_on_loopback_and_ipv6_is_bracketed(tmp_path: Path) -> None:
    assert config_trade_url(_config_at(tmp_path, "0.0.0.0", 21601)) == (
        "ws://127.0.0.1:21601/ws/trade"
    )
    assert config_trade_url(_config_at(tmp_path, "::", 21601)) == "ws://[::1]:21601/ws/trade"


def test_no_file_or_port_0_leaves_the_default(tmp_path: Path) -> None:
    """Port 0 is any free port: only `venue serve`'s own line says which."""
    assert config_trade_url(tmp_path / "nowhere.toml") == URL_DEFAULT
    assert config_trade_url(_config_at(tmp_path, "127.0.0.1", 0)) == URL_DEFAULT
