"""The trader's web page over HTTP: the files of `gateway/web/` at `/` and `/static/...`.

Owns only the serving: which paths exist, their content types and caching headers, and
the answers to methods and paths it does not serve. The page itself speaks the websocket
API like any client (docs/web.md); `ConnectionHandler.on_http` hands requests here.
Invariants: the site is a fixed table built once from the package's files, so no part of a
request path ever reaches the file system (no traversal, no symlinks followed at request
time); every answer has a content type, `Cache-Control: no-cache` and, for files, an
ETag (a hash of the bytes) that answers a matching `If-None-Match` with 304. Paths that are
neither `/` nor under `/static/` are not ours: `respond` returns None (the caller's 404).
Limits: SITE_BYTES_MAX for the whole site, held in memory; only GET and HEAD (405 else).
"""

import email.utils
import hashlib
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

WEB_ROOT = Path(__file__).with_name("web")
STATIC_PREFIX = "/static/"
INDEX = "index.html"
SITE_BYTES_MAX = 4 * 2**20  # the page is ~0.3 MB; more means something unintended was packaged
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}
# The page loads only its own files and talks only to its own origin: CSP Level 3's 'self'
# matches its ws: and wss: too, where a scheme source (`ws:`) would allow every host.
# Inline styles: the chart library sets element styles as it draws.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


class StaticSite:
    """The page's files by URL path, read once."""

    def __init__(self, root: Path = WEB_ROOT) -> None:
        self.assets: dict[str, Asset] = {}
        total = 0
        for file in sorted(root.rglob("*")):
            if not file.is_file() or file.name.startswith("."):
                continue
            body = file.read_bytes()
            total += len(body)
            url = STATIC_PREFIX + file.relative_to(root).as_posix()
            self.assets[url] = _asset(body, file.suffix)
        assert total <= SITE_BYTES_MAX, f"the web page's files hold {total} bytes"
        self.assets["/"] = self.assets[STATIC_PREFIX + INDEX]

    def respond(self, request: Request) -> Response | None:
        """The answer for `/` and `/static/...`; None for any other path."""
        path = request.path.partition("?")[0]
        if path != "/" and not path.startswith(STATIC_PREFIX):
            return None
        if request.method not in ("GET", "HEAD"):
            response = _text(HTTPStatus.METHOD_NOT_ALLOWED, "the page is read with GET\n")
            response.headers["Allow"] = "GET, HEAD"
            return response
        asset = self.assets.get(path)
        if asset is None:
            return _text(HTTPStatus.NOT_FOUND, f"no such file: {path}\n")
        tags = _etags(request.headers.get("If-None-Match", ""))
        if asset.etag in tags or "*" in tags:  # `*`: any current representation (RFC 9110)
            return _response(HTTPStatus.NOT_MODIFIED, asset, b"")
        return _response(HTTPStatus.OK, asset, b"" if request.method == "HEAD" else asset.body)


@cache
def site() -> StaticSite:
    """The package's site, read on first use (a server that is never asked reads nothing)."""
    return StaticSite()


def respond(request: Request) -> Response | None:
    return site().respond(request)


def too_many_requests(retry_after_ms: int) -> Response:
    """429 for a client past its rate for the page's files, told when to retry."""
    response = _text(
        HTTPStatus.TOO_MANY_REQUESTS,
        f"too many requests from this address: retry in {retry_after_ms} ms\n",
    )
    response.headers["Retry-After"] = str(-(-retry_after_ms // 1_000))  # whole s, rounded up
    return response


def _asset(body: bytes, suffix: str) -> Asset:
    content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header; weak ones compare as strong (RFC 9110)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _response(status: HTTPStatus, asset: Asset, body: bytes) -> Response:
    headers = _headers(asset.content_type, len(asset.body))
    headers["ETag"] = asset.etag
    if asset.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if status is HTTPStatus.NOT_MODIFIED:
        del headers["Content-Length"]
    return Response(status.value, status.phrase, headers, body)


def _text(status: HTTPStatus, text: str) -> Response:
    body = text.encode()
    return Response(
        status.value, status.phrase, _headers("text/plain; charset=utf-8", len(body)), body
    )


def _headers(content_type: str, length: int) -> Headers:
    return Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            ("Cache-Control", "no-cache"),  # revalidate by ETag: a new build shows at once
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
    )
