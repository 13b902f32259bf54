"""A small JSON-over-HTTPS client for the providers' APIs: a deadline on every request, a cap
on every answer, retries with back-off on 429 (honouring Retry-After, within a bound) and 5xx,
and one clear error (never a traceback) when the API refuses us or stays away.

>>> backoff(0), backoff(3)
(1.0, 8.0)
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from ..errors import EspError, EspUnavailable

__all__ = ["ApiClient", "backoff"]

#: The largest answer read from an API (a page of events is far smaller).
ANSWER_MAX = 32 * 1024 * 1024
#: The longest single wait a Retry-After may ask of us.
WAIT_MAX = 60.0


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): 1, 2, 4, 8... up to 30."""
    return float(min(30, 2 ** attempt))


class ApiClient:
    """GETs JSON from one provider's API base; ``sleep`` is the tests' seam for waiting."""

    def __init__(self, base: str, *, headers: dict[str, str] | None = None, basic: tuple[str, str] | None = None,
                 timeout: float = 30.0, retries: int = 4, sleep: Callable[[float], None] = time.sleep,
                 name: str = "the API"):
        self.base = base.rstrip("/")
        self.headers = {"Accept": "application/json", "User-Agent": "newsletter-kit", **(headers or {})}
        if basic:
            token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.timeout, self.retries, self.sleep, self.name = timeout, retries, sleep, name
        self.waited = 0.0

    def __repr__(self) -> str:  # the headers hold the key: never shown
        return f"ApiClient({self.base!r})"

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """The absolute URL of ``path`` (or of a ``next`` link on the same host) with ``params``."""
        if path.startswith(("https://", "http://")):
            given, ours = urllib.parse.urlsplit(path), urllib.parse.urlsplit(self.base)
            if (given.scheme, given.netloc) != (ours.scheme, ours.netloc):
                raise EspError(f"{self.name} sent a link to another host ({given.netloc[:60]}): not followed")
            url = path
        else:
            url = self.base + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(
                {k: v for k, v in params.items() if v is not None})
        return url

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON answer of GET ``path``; retried on 429 and 5xx, an :class:`EspError` else."""
        url = self.url(path, params)
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, headers=self.headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (https or loopback)
                    body = response.read(ANSWER_MAX + 1)
                if len(body) > ANSWER_MAX:
                    raise EspError(f"{self.name} answered more than {ANSWER_MAX // 2**20} MB: not read")
                try:
                    return json.loads(body)
                except ValueError:
                    raise EspError(f"{self.name} answered something that is not JSON") from None
            except urllib.error.HTTPError as exc:
                status = exc.code
                if status in (401, 403):
                    raise EspError(f"{self.name} refused the credentials (HTTP {status}): check the API key "
                                   "reference in `settings esp`") from None
                if status == 429 or status >= 500:
                    if attempt == self.retries:
                        raise EspUnavailable(f"{self.name} kept answering HTTP {status} after {self.retries} "
                                             "retries: run the sync again later") from None
                    self._wait(exc.headers.get("Retry-After"), attempt)
                    continue
                raise EspError(f"{self.name} answered HTTP {status} for {urllib.parse.urlsplit(url).path[:80]}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.retries:
                    reason = getattr(exc, "reason", exc)
                    raise EspUnavailable(f"{self.name} cannot be reached: {str(reason)[:120]}") from None
                self._wait(None, attempt)
        raise AssertionError("unreachable")

    def _wait(self, retry_after: str | None, attempt: int) -> None:
        seconds = backoff(attempt)
        if retry_after:
            try:
                seconds = max(0.0, min(WAIT_MAX, float(retry_after)))
            except ValueError:
                pass
        self.waited += seconds
        self.sleep(seconds)
