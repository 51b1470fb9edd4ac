"""gateway/static.py: the web page's files over HTTP on the venue's port, against a real server."""

import http.client
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Request

from gateway.static import STATIC_PREFIX, StaticSite, _etags

VENDORED = "/static/vendor/lightweight-charts-5.2.1/"


def fetch(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def serve(run_venue: Callable[..., Any], *requests: tuple[Any, ...]) -> list[Any]:
    """Each (path, method?, headers?) fetched from a fresh venue, in a thread off its loop."""

    async def scenario(venue: Any) -> list[Any]:
        import asyncio

        return [await asyncio.to_thread(fetch, venue.port, *request) for request in requests]

    answers: list[Any] = run_venue(scenario)
    return answers


def test_the_page_is_served_at_the_root_with_its_headers(run_venue: Callable[..., Any]) -> None:
    [(status, headers, body)] = serve(run_venue, ("/",))
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-content-type-options"] == "nosniff"
    assert "connect-src 'self';" in headers["content-security-policy"]
    assert headers["etag"].startswith('"')
    assert int(headers["content-length"]) == len(body)
    assert b'<script type="module" src="/static/app.js"></script>' in body


def test_each_file_has_its_content_type(run_venue: Callable[..., Any]) -> None:
    answers = serve(
        run_venue,
        ("/static/app.js",),
        ("/static/style.css",),
        ("/static/favicon.svg",),
        (VENDORED + "lightweight-charts.standalone.production.mjs",),
        (VENDORED + "LICENSE",),
        ("/static/index.html?v=1",),  # a query string does not change the file
    )
    types = [headers["content-type"] for _, headers, _ in answers]
    assert [status for status, _, _ in answers] == [200] * 6
    assert types == [
        "text/javascript; charset=utf-8",
        "text/css; charset=utf-8",
        "image/svg+xml",
        "text/javascript; charset=utf-8",
        "text/plain; charset=utf-8",
        "text/html; charset=utf-8",
    ]
    assert b"Apache License" in answers[4][2]


def test_a_matching_etag_is_answered_304_and_head_has_no_body(
    run_venue: Callable[..., Any],
) -> None:
    [(_, headers, body)] = serve(run_venue, ("/static/app.js",))
    etag = headers["etag"]
    answers = serve(
        run_venue,
        ("/static/app.js", "GET", {"If-None-Match": etag}),
        ("/static/app.js", "GET", {"If-None-Match": f'"other", W/{etag}'}),
        ("/static/app.js", "GET", {"If-None-Match": '"other"'}),
        ("/static/app.js", "HEAD"),
        # `*` matches any current representation (RFC 9110 13.1.2); was 200 (session 23)
        ("/static/app.js", "GET", {"If-None-Match": "*"}),
    )
    assert [(status, len(content)) for status, _, content in answers] == [
        (304, 0),
        (304, 0),
        (200, len(body)),
        (200, 0),
        (304, 0),
    ]
    assert answers[0][1]["etag"] == etag
    assert answers[3][1]["content-length"] == str(len(body))


def test_unknown_files_and_traversal_get_404(run_venue: Callable[..., Any]) -> None:
    answers = serve(
        run_venue,
        ("/static/nope.js",),
        ("/static/../static.py",),
        ("/static/%2e%2e/static.py",),
        ("/static/../../pyproject.toml",),
        ("/static/",),
        ("/static/vendor",),
        ("/index.html",),  # not ours: the websocket layer's 404
    )
    assert [status for status, _, _ in answers] == [404] * 7
    assert answers[1][2] == b"no such file: /static/../static.py\n"
    assert answers[6][2] == b"use /ws/trade or /ws/public\n"


def test_methods_other_than_get_and_head_get_405(run_venue: Callable[..., Any]) -> None:
    """The transport's own 405 answered them (found in session 23): `Allow: GET`, though
    HEAD is served, and none of the headers every answer of the page has (docs/web.md)."""
    answers = serve(run_venue, ("/", "POST", {"Content-Length": "0"}), ("/static/app.js", "PUT"))
    assert [status for status, _, _ in answers] == [405, 405]
    for _, headers, body in answers:
        assert headers["allow"] == "GET, HEAD", headers
        assert headers["x-content-type-options"] == "nosniff", headers
        assert headers["cache-control"] == "no-cache" and "referrer-policy" in headers
        assert body == b"the page is read with GET\n"


def test_the_site_is_built_from_its_folder_only(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.js").write_text("1")
    (tmp_path / ".hidden").write_text("secret")
    site = StaticSite(tmp_path)
    assert sorted(site.assets) == ["/", STATIC_PREFIX + "index.html", STATIC_PREFIX + "sub/a.js"]
    request = Request("/static/.hidden", Headers())
    response = site.respond(request)
    assert response is not None and response.status_code == 404
    assert site.respond(Request("/api/v1/ticker", Headers())) is None  # another module's


def test_if_none_match_lists_are_read_with_weak_tags() -> None:
    assert _etags('"a", W/"b" ,"c"') == {'"a"', '"b"', '"c"'}
    assert _etags("") == set()


def test_the_pages_policy_lets_it_connect_to_its_own_origin_only() -> None:
    # A scheme source such as `ws:` allows every host over that scheme: the page could then be
    # made to open a websocket anywhere. CSP Level 3's 'self' already matches the page's own
    # ws: and wss: (docs/web.md).
    response = StaticSite().respond(Request("/", Headers()))
    assert response is not None
    policy = response.headers["Content-Security-Policy"]
    directives = {
        name: sources
        for name, *sources in (part.split() for part in policy.split(";") if part.strip())
    }
    assert directives["connect-src"] == ["'self'"]
    scheme_sources = {
        (name, source)
        for name, sources in directives.items()
        for source in sources
        if source.endswith(":")
    }
    assert scheme_sources == {("img-src", "data:")}  # the chart's images, drawn in the page


class _Controls(HTMLParser):
    """The page's form controls, each with whether it has a name a screen reader reads out
    (a wrapping <label>, an aria-label, or a button's text), and its live regions by id."""

    def __init__(self) -> None:
        super().__init__()
        self.labels_open = 0
        self.controls: dict[str, bool] = {}
        self.roles: dict[str, str] = {}
        self.button: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        name = attributes.get("id") or attributes.get("value") or tag
        if tag == "label":
            self.labels_open += 1
        elif tag in ("input", "select"):
            self.controls[name] = self.labels_open > 0 or bool(attributes.get("aria-label"))
        elif tag == "button":
            self.button = name
            self.controls[name] = bool(attributes.get("aria-label"))
        # live regions only: the open orders' table says its table roles too (docs/web.md)
        if attributes.get("role") in ("status", "alert", "log") and attributes.get("id"):
            self.roles[str(attributes["id"])] = str(attributes["role"])
        elif attributes.get("aria-live") in ("polite", "assertive") and attributes.get("id"):
            self.roles[str(attributes["id"])] = f"live {attributes['aria-live']}"

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.labels_open -= 1
        elif tag == "button":
            self.button = None

    def handle_data(self, data: str) -> None:
        if self.button is not None and data.strip():
            self.controls[self.button] = True


def test_every_control_of_the_page_has_a_name_and_its_status_lines_are_announced() -> None:
    # A placeholder is no label (it goes as one types); the market-data status is how a
    # trader learns the connection dropped, so a screen reader must announce it too.
    response = StaticSite().respond(Request("/", Headers()))
    assert response is not None
    controls = _Controls()
    controls.feed(response.body.decode())
    assert [name for name, named in controls.controls.items() if not named] == []
    assert {"api-key", "api-secret", "order-qty", "place-button"} <= set(controls.controls)
    # the logon line: refusals at once (an alert), the session's drops and tries politely,
    # its countdown's seconds not at all (session 30: they were an alert every second)
    assert controls.roles == {
        "market-status": "status",
        "logon-alert": "alert",
        "logon-status": "live polite",
        "order-result": "status",
    }
    assert '<span id="relogon-countdown" aria-hidden="true">' in response.body.decode()


def test_the_tape_and_the_fills_say_their_times_are_utc() -> None:
    # The page prints trade times in UTC (app.js `clock`): unlabelled, a trader anywhere
    # else reads them as local times, hours off.
    response = StaticSite().respond(Request("/", Headers()))
    assert response is not None
    page = response.body.decode()
    # (the fills' header has its role said: on a phone the fills show as blocks)
    assert len(re.findall(r"<th( [^>]*)?>time \(UTC\)</th>", page)) == 2
    assert not re.search(r"<th( [^>]*)?>time</th>", page)
