"""A small REST client for the venue (docs/rest.md): stdlib `http.client`, one keep-alive
connection, requests signed with the API key's secret when a key is given.

Owns the signing of requests (`X-API-Key`, `X-Timestamp`, `X-Nonce`, `X-Recv-Window`,
`X-Signature`) and JSON in and out; blocking, so call it from a thread inside asyncio code.
"""

import http.client
import itertools
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from gateway.auth import RECV_WINDOW_MS_DEFAULT, sign_request

TIMEOUT_S = 10  # a venue on loopback answers in milliseconds


class RestResponse:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"RestResponse({self.status}, {self.body[:200]!r})"


class RestClient:
    """`RestClient("http://127.0.0.1:8080", key, secret).get("/api/v1/balances")`."""

    def __init__(self, base_url: str, api_key: str | None = None, secret: str | None = None):
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.api_key = api_key
        self.secret = secret
        self.recv_window_ms = RECV_WINDOW_MS_DEFAULT
        self._nonces = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._connection: http.client.HTTPConnection | None = None

    def get(self, path: str, **query: Any) -> RestResponse:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any) -> RestResponse:
        return self.request("POST", path, body=json.dumps(body).encode())

    def patch(self, path: str, body: Any) -> RestResponse:
        return self.request("PATCH", path, body=json.dumps(body).encode())

    def delete(self, path: str) -> RestResponse:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        signed: bool | None = None,
    ) -> RestResponse:
        """One request; signed when the client has a key (unless `signed` is False)."""
        query_text = urlencode({k: v for k, v in (query or {}).items() if v is not None})
        sent = dict(headers or {})
        if body:
            sent.setdefault("Content-Type", "application/json")
        if (signed is None and self.api_key is not None) or signed:
            sent |= self.signature(method, path, query_text, body)
        target = path + ("?" + query_text if query_text else "")
        reused = self._connection is not None
        try:
            return self._send(method, target, body, sent)
        except (ConnectionError, http.client.HTTPException):
            self.close()
            if not (reused and method == "GET"):
                raise
        # the server closed the idle keep-alive connection: a GET is safe to send again
        return self._send(method, target, body, sent)

    def _send(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> RestResponse:
        connection = self._connect()
        connection.request(method, target, body=body or None, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        return RestResponse(response.status, data, dict(response.getheaders()))

    def signature(self, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
        assert self.api_key is not None and self.secret is not None, "a key signs"
        ts_us = time.time_ns() // 1_000
        nonce = f"{self._prefix}-{next(self._nonces)}"
        window = self.recv_window_ms
        sig = sign_request(
            self.secret, self.api_key, ts_us, nonce, window, method, path, query, body
        )
        return {
            "X-API-Key": self.api_key,
            "X-Timestamp": str(ts_us),
            "X-Nonce": nonce,
            "X-Recv-Window": str(window),
            "X-Signature": sig,
        }

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
        return self._connection
