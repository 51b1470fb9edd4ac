"""`venue serve`'s banner prints the published demo keys' secrets only (session 25)."""

from pathlib import Path

from tests.cli.test_serve import _banner
from tests.sample_config import SAMPLE_CONFIG

PRIVATE_KEY = (
    '[[api_keys]]\nkey = "desk-7"\nsecret = "never-on-stdout-7"\naccount = 3\nscopes = ["read"]\n'
)


def test_the_banner_prints_no_secret_but_the_published_demo_keys(tmp_path: Path) -> None:
    """The finding: the banner printed every configured key's secret, so a production
    venue's secrets landed in its supervisor's log (stdout, journald). A key of the shipped
    venue.toml is published with the code: its secret is still printed, for a newcomer."""
    config = tmp_path / "venue.toml"
    config.write_text(SAMPLE_CONFIG.read_text() + "\n" + PRIVATE_KEY)
    with _banner(tmp_path, "--config", str(config)) as lines:
        text = "".join(lines)
        assert "never-on-stdout-7" not in text, text
        [desk] = [line for line in lines if line.split()[:3] == ["api", "key", "desk-7"]]
        assert desk.split()[3:6] == ["secret", "(in", "the"], desk
        assert any(
            line.split()[:5] == ["api", "key", "demo-taker", "secret", "demo-secret-taker"]
            for line in lines
        ), text
