"""Take docs/web.png: the web page on a fresh demo venue with a few orders and trades.

Run from the repository's root: `.venv/bin/python scripts/screenshot.py [out.png]`. It starts
a venue (venue.toml, a temporary data directory, a free port on 127.0.0.1), has the demo
market makers quote AAPLx-USD through the Python SDK, opens the page in Debian's headless
Chromium (scripts/install-chromium.sh), logs on as demo-taker, buys across the spread, and
saves a screenshot. Nothing is downloaded.
"""

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright, expect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from client.sdk import VenueClient  # noqa: E402
from core import config as venue_config  # noqa: E402
from gateway.server import VenueServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
SYMBOL = "AAPLx-USD"
QUOTES = [  # (key, side, price, qty)
    ("alpha", "sell", "187.30", "12"),
    ("beta", "sell", "187.35", "20"),
    ("alpha", "sell", "187.45", "35"),
    ("beta", "sell", "187.60", "60"),
    ("alpha", "buy", "187.20", "15"),
    ("beta", "buy", "187.10", "25"),
    ("alpha", "buy", "187.00", "40"),
    ("beta", "buy", "186.80", "70"),
]
KEYS = {
    "alpha": ("demo-mm-alpha", "demo-secret-mm-alpha"),
    "beta": ("demo-mm-beta", "demo-secret-mm-beta"),
}


async def populate(url: str) -> list[VenueClient]:
    clients = {}
    for who, (key, secret) in KEYS.items():
        clients[who] = await VenueClient(url).connect()
        await clients[who].logon(key, secret)
    for who, side, price, qty in QUOTES:
        await clients[who].place(SYMBOL, side, qty=qty, price=price)
    await clients["beta"].place(SYMBOL, "buy", qty="3", price="187.30", tif="ioc")  # a trade
    return list(clients.values())


async def shoot(port: int, out: Path, profile: Path) -> None:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 980},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(f"http://127.0.0.1:{port}/#{SYMBOL}")
            await expect(page.locator("#market-status")).to_have_text("market data: live")
            await page.fill("#api-key", "demo-taker")
            await page.fill("#api-secret", "demo-secret-taker")
            await page.click("#logon-button")
            await expect(page.locator("#account")).to_have_text("3")
            await page.fill("#order-price", "187.35")
            await page.fill("#order-qty", "15")
            await page.click("#place-button")
            await expect(page.locator("#order-result")).to_contain_text("filled")
            await page.fill("#order-price", "186.90")
            await page.fill("#order-qty", "5")
            await page.click("#place-button")
            await expect(page.locator("#open-orders tbody tr")).to_have_count(1)
            await page.wait_for_timeout(500)  # the chart's last frame
            await page.screenshot(path=str(out), full_page=True)
        finally:
            await context.close()


async def main(out: Path) -> None:
    config = venue_config.load(ROOT / "venue.toml")
    with tempfile.TemporaryDirectory() as scratch:
        server = VenueServer(config, Path(scratch) / "data")
        port = await server.start("127.0.0.1", 0)
        clients: list[VenueClient] = []
        try:
            clients = await populate(f"ws://127.0.0.1:{port}/ws/trade")
            await asyncio.wait_for(shoot(port, out, Path(scratch) / "profile"), 60)
        finally:
            for client in clients:
                await client.close()
            await server.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "web.png"))
