"""A small client for the OpenAI chat-completions protocol, as vLLM, SGLang, hosted APIs and a
LiteLLM proxy all speak it: the standard library's HTTP, one kept-alive connection per thread.

It retries as the official clients do: connection errors, timeouts, 408, 409, 429 and 5xx,
unless the server says `x-should-retry: false` (and whatever it says `true` to); it waits what
`retry-after-ms` or `retry-after` asks (up to a minute), else 0.5 s doubling to at most 8 s,
less up to a quarter at random. 401, 403 and 404 stop the whole run at once: a bad key or an
unknown model does not get better by asking again.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import GovError

RETRYABLE = {408, 409, 429}
FATAL = {
    401: "the API key was refused (401): set it in OPENAI_API_KEY, or name its variable with "
    "--api-key-env",
    403: "the API key may not use this model or endpoint (403)",
    404: "not found (404): an unknown model, or an endpoint that is not the base URL ending in /v1",
}


class EndpointError(GovError):
    """The endpoint cannot serve this run at all: stop, one line, exit 2."""


@dataclass(frozen=True)
class Reply:
    """What the server answered, or why it gave no answer (`failure`)."""

    status: int
    body: dict[str, Any] | None
    failure: str | None = None
    attempts: int = 1


class ChatClient:
    """POST {endpoint}/chat/completions, with retries; thread-safe (a connection per thread)."""

    def __init__(
        self,
        endpoint: str,
        api_key: str | None,
        *,
        timeout: float = 60.0,
        max_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(endpoint.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GovError(f"{endpoint}: not an http(s) URL (the base URL, ending in /v1)")
        if parts.username or parts.password or parts.query or parts.fragment:
            # credentials in a URL would be written wherever the endpoint is recorded
            raise GovError(
                "--endpoint: the base URL alone (no user, password or query in it); the key "
                "comes from the environment"
            )
        self.endpoint = endpoint.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        api_key = (api_key or "").strip()
        if api_key:
            if any(ord(c) < 33 or ord(c) == 127 for c in api_key):
                raise GovError(
                    "the API key holds spaces or control characters: check the variable that "
                    "holds it (it is not shown here)"
                )
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._answered = False  # a refused connection is fatal only before any reply
        self.timeout = timeout
        self.max_retries = max_retries
        self._sleep = sleep
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = kind(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def complete(self, body: dict[str, Any]) -> Reply:
        """The server's answer to one request, after the retries it allows."""
        data = json.dumps(body).encode()
        attempt = 0
        while True:
            status, headers, payload, failure = self._send(data)
            if status in FATAL:
                raise EndpointError(f"{self.endpoint}: {FATAL[status]}{_detail(payload)}")
            if failure is None and 200 <= status < 300:
                self._answered = True
                try:
                    parsed = json.loads(payload)
                except ValueError:
                    return Reply(status, None, "the server's reply is not JSON", attempt + 1)
                if not isinstance(parsed, dict):
                    return Reply(
                        status, None, "the server's reply is not a JSON object", attempt + 1
                    )
                return Reply(status, parsed, None, attempt + 1)
            should = headers.get("x-should-retry", "").lower()
            retry = should == "true" or (
                should != "false" and (failure is not None or status in RETRYABLE or status >= 500)
            )
            if not retry or attempt >= self.max_retries:
                why = failure or f"HTTP {status}{_detail(payload)}"
                return Reply(status, None, why, attempt + 1)
            self._sleep(_wait(headers, attempt))
            attempt += 1

    def _send(self, data: bytes) -> tuple[int, dict[str, str], bytes, str | None]:
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=data, headers=self._headers)
            response = conn.getresponse()
            payload = response.read()
            headers = {k.lower(): v for k, v in response.getheaders()}
            if headers.get("connection", "").lower() == "close":
                self._drop()
            return response.status, headers, payload, None
        except TimeoutError:
            self._drop()
            return 0, {}, b"", f"no reply within {self.timeout:g} s"
        except ValueError:  # a header http.client refuses: never echo it (it may be the key)
            self._drop()
            raise GovError("a request header was refused as invalid: check the API key") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            self._drop()
            if isinstance(exc, socket.gaierror) or (
                isinstance(exc, ConnectionRefusedError) and not self._answered
            ):
                raise EndpointError(
                    f"{self.endpoint}: unreachable ({exc.strerror or exc})"
                ) from None
            return 0, {}, b"", f"connection failed ({exc.__class__.__name__})"


def _wait(headers: dict[str, str], attempt: int) -> float:
    """How long to wait before retry `attempt + 1`: what the server asks, within a minute, else
    exponential backoff with jitter."""
    asked: float | None = None
    try:
        asked = float(headers["retry-after-ms"]) / 1000
    except (KeyError, ValueError):
        value = headers.get("retry-after")
        if value is not None:
            try:
                asked = float(value)
            except ValueError:
                try:
                    asked = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
                except (TypeError, ValueError):
                    asked = None
    if asked is not None and 0 < asked <= 60:
        return asked
    return float(min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random()))


def _detail(payload: bytes) -> str:
    """The server's own error message, when it gives one: `{"error": {"message": ...}}`."""
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        return ""
    message = error.get("message") if isinstance(error, dict) else error
    return f": {str(message).splitlines()[0][:200]}" if message else ""
