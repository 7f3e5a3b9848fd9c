"""A small GitHub REST client on httpx: headers, retries, rate limits, pagination.

Reads (GET) are retried on 5xx and transport errors with jittered backoff. Writes are
not retried blindly: a write whose answer was lost may have happened, so the caller
decides (the dispatch flow looks for the run before it dispatches again). Rate-limited
requests were not processed, so every call waits out a short `retry-after` and tries
again; a longer one is raised as RateLimited for the caller to report. Content-creating
calls are serialised per process, as GitHub asks, against its secondary rate limits.

Under a request deadline (`governor.deadline`, set by the webhook) each attempt's
timeout is what is left of it, and no retry, backoff or rate-limit wait is started that
would end past it: DeadlineExceeded instead (nothing was sent, or a read was cut). A
write the deadline cut while it was in flight may have happened, so it raises
OutcomeUnknownPastDeadline, which is both an OutcomeUnknown (callers look before they
redo it) and a DeadlineExceeded (the request ends as a transient failure).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import httpx

from governor import __version__, deadline
from governor.deadline import DeadlineExceeded

API_VERSION: Final = "2022-11-28"
USER_AGENT: Final = f"release-governor/{__version__} (+https://github.com/apps/release-governor)"
_RETRYABLE_STATUS: Final = frozenset({500, 502, 503, 504})


class GitHubError(Exception):
    """GitHub answered with an error; `status` is its HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str, *, method: str = "", path: str = "") -> None:
        where = f"{method} {path}: " if method else ""
        super().__init__(f"GitHub {where}{status} {message}".strip())
        self.status = status
        self.message = message


class NotFound(GitHubError):
    pass


class Unprocessable(GitHubError):
    """422: GitHub understood the request and refused it (e.g. no such ref)."""


class RateLimited(GitHubError):
    def __init__(self, retry_after_s: float, *, method: str = "", path: str = "") -> None:
        super().__init__(
            429, f"rate limited, retry after {retry_after_s:.0f} s", method=method, path=path
        )
        self.retry_after_s = retry_after_s


class GitHubUnavailable(GitHubError):
    """5xx or no answer on a read, after retries: try again later."""


class OutcomeUnknown(GitHubError):
    """A write got no usable answer (timeout, connection lost, 5xx): it may have happened."""


class OutcomeUnknownPastDeadline(OutcomeUnknown, DeadlineExceeded):
    """A write cut by the request's deadline while in flight: it may have happened."""

    def __init__(self, cut: DeadlineExceeded, *, method: str, path: str) -> None:
        # Both bases' fields, set here: their __init__s do not cooperate.
        message = f"no answer within the request's time budget ({cut.budget_s:g} s)"
        Exception.__init__(self, f"GitHub {method} {path}: 0 {message}")
        self.status = 0
        self.message = message
        self.what = cut.what
        self.budget_s = cut.budget_s


def _rate_limit_wait(response: httpx.Response, now: float) -> float | None:
    """Seconds to wait if `response` says the request was rate limited, else None."""
    if response.status_code not in (403, 429):
        return None
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset")
        return max(0.0, float(reset) - now) if reset and reset.isdigit() else 60.0
    if response.status_code == 429:
        return 60.0
    return None  # a 403 that is a permission problem, not a rate limit


class GitHubClient:
    def __init__(
        self,
        api_url: str,
        authorization: Callable[[], str],
        *,
        timeout_s: float = 10.0,
        read_attempts: int = 3,
        max_rate_limit_wait_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_unauthorized: Callable[[], None] | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=api_url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": USER_AGENT,
            },
        )
        self._authorization = authorization
        self._read_attempts = read_attempts
        self._max_rate_limit_wait_s = max_rate_limit_wait_s
        self._sleep = sleep
        self._on_unauthorized = on_unauthorized

    # One per process, as GitHub asks for serial writes. Reentrant: a write may first have
    # to fetch an installation token, which is itself a POST.
    _write_lock = threading.RLock()

    def get(
        self, path: str, params: dict[str, Any] | None = None, *, etag: str | None = None
    ) -> httpx.Response:
        """GET; with `etag`, a conditional request: 304 (and no body) when unchanged, which
        GitHub does not count against the rate limit."""
        return self._send("GET", path, params=params, etag=etag)

    def post(self, path: str, body: dict[str, Any] | None) -> httpx.Response:
        """POST `body` as JSON; None sends no body (an operation that takes none)."""
        left = deadline.remaining()
        if not self._write_lock.acquire(timeout=-1 if left is None else left):
            raise deadline.exceeded(f"waiting to send POST {path} (GitHub writes go one by one)")
        try:
            return self._send("POST", path, json=body)
        finally:
            self._write_lock.release()

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[httpx.Response]:
        """Every page of a listing, following the Link header's `next`."""
        response = self.get(path, {"per_page": 100, **(params or {})})
        yield response
        while (next_url := response.links.get("next", {}).get("url")) is not None:
            response = self._send("GET", next_url)
            yield response

    def close(self) -> None:
        self._http.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        etag: str | None = None,
    ) -> httpx.Response:
        is_read = method == "GET"
        attempt = 0
        while True:
            attempt += 1
            authorization = self._authorization()  # may fetch a token: a request of its own
            deadline.check(f"before GitHub {method} {path}")  # nothing sent yet
            timeout = deadline.bounded(self._timeout_s)
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    headers={
                        "Authorization": authorization,
                        **({"If-None-Match": etag} if etag else {}),
                    },
                    timeout=timeout,
                )
            except httpx.TransportError as exc:
                self._no_answer(exc, method, path, attempt, cut_short=timeout < self._timeout_s)
                continue  # it backed off: try again
            wait = _rate_limit_wait(response, time.time())
            if wait is not None:
                if wait > self._max_rate_limit_wait_s or attempt >= self._read_attempts + 1:
                    raise RateLimited(wait, method=method, path=path)
                self._pause(wait + random.uniform(0, 0.25), f"{method} {path} (rate limited)")
                continue
            if response.status_code == 401 and self._on_unauthorized and attempt == 1:
                self._on_unauthorized()  # a token revoked before its time: fetch a new one
                continue
            if response.status_code in _RETRYABLE_STATUS:
                if is_read and attempt < self._read_attempts:
                    self._backoff(attempt, f"{method} {path}")
                    continue
                error = GitHubUnavailable if is_read else OutcomeUnknown
                raise error(response.status_code, _message(response), method=method, path=path)
            if response.status_code == 404:
                raise NotFound(404, _message(response), method=method, path=path)
            if response.status_code == 422:
                raise Unprocessable(422, _message(response), method=method, path=path)
            if response.status_code >= 400:
                raise GitHubError(
                    response.status_code, _message(response), method=method, path=path
                )
            return response

    def _no_answer(
        self, exc: httpx.TransportError, method: str, path: str, attempt: int, *, cut_short: bool
    ) -> None:
        """After a request got no answer: back off before another try, or raise."""
        is_read = method == "GET"
        if cut_short and isinstance(exc, httpx.TimeoutException):  # the deadline cut it
            cut = deadline.exceeded(f"waiting for GitHub {method} {path}")
            if is_read:
                raise cut from None
            raise OutcomeUnknownPastDeadline(cut, method=method, path=path) from None
        if is_read and attempt < self._read_attempts:
            self._backoff(attempt, f"{method} {path}")
            return
        error = GitHubUnavailable if is_read else OutcomeUnknown
        raise error(0, f"no answer ({type(exc).__name__})", method=method, path=path) from None

    def _backoff(self, attempt: int, what: str) -> None:
        self._pause(random.uniform(0, min(4.0, 0.25 * 2**attempt)), what)

    def _pause(self, seconds: float, what: str) -> None:
        """Sleep before trying `what` again, unless that would end past the deadline."""
        left = deadline.remaining()
        if left is not None and seconds >= left:
            raise deadline.exceeded(f"before retrying GitHub {what}")
        self._sleep(seconds)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else str(body)[:200]
