"""HTTP entry points (Cloud Functions gen2 / functions-framework). Nothing else lives here.

Each function turns a Flask request into plain values, calls the governor library and
turns its answer into a response.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import flask
import functions_framework
from governor import __version__, deadline
from governor.deadline import DeadlineExceeded
from governor.events import MAX_BODY_BYTES, InvalidDelivery, parse_delivery
from governor.flows import delivery as deliveries
from governor.flows.context import Context
from governor.flows.results import Duplicate, FlowResult, Ignored, InProgress, to_json
from governor.github.client import RateLimited
from governor.ledger import Ledger
from governor.logs import configure_logging, with_request_trace
from governor.settings import AppSettings, ConfigError, load_settings
from governor.store import ObjectStore, WriteContention
from governor.wiring import Governor

configure_logging()
log = logging.getLogger("governor.functions")


@functools.cache
def _settings() -> AppSettings:
    return load_settings()


@functools.cache
def _governor() -> Governor:
    return Governor(_settings())


def _store() -> ObjectStore:
    return _governor().store


def _context() -> Context:
    return _governor().context


def _status_of(result: FlowResult) -> int:
    """200 when there was nothing (more) to do; 202 when the delivery was acted on; 503
    while another instance holds its claim: GitHub then records the attempt as failed,
    so reconcile redelivers it if that instance dies (once its work is done, it does not)."""
    if isinstance(result, InProgress):
        return 503
    return 200 if isinstance(result, (Ignored, Duplicate)) else 202


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> flask.Response:
    return flask.Response(
        json.dumps(body, sort_keys=True, default=str) + "\n",
        status=status,
        headers=headers,
        mimetype="application/json",
    )


def _unavailable(message: str, retry_after_s: float) -> flask.Response:
    return _json(503, {"error": message}, {"Retry-After": str(max(1, round(retry_after_s)))})


def _not_configured(exc: ConfigError) -> flask.Response:
    """503 for every request while the settings are unusable; the details go to the log only."""
    log.error("governor is not configured: %s", exc)
    return _unavailable("governor is not configured; the function's log says what to fix", 60)


@functions_framework.http
@with_request_trace  # log lines carry the request's Cloud Trace
def health(request: flask.Request) -> flask.Response:
    """200 when settings load and the store answers; 503 otherwise (details in the log only)."""
    try:
        _store().get("health/probe")
    except ConfigError as exc:
        return _not_configured(exc)
    except Exception as exc:  # any failure to reach the store is "not healthy", never a 500
        log.error("health: the store is not usable: %s: %s", type(exc).__name__, exc)
        return _unavailable("the store is not usable; the function's log says why", 30)
    return _json(200, {"status": "ok", "version": __version__})


@functions_framework.http
@with_request_trace  # log lines carry the request's Cloud Trace
def github_webhook(request: flask.Request) -> flask.Response:  # noqa: PLR0911
    """Receive a GitHub webhook delivery: signature first, then everything else.

    The whole request has one time budget (GOVERNOR_WEBHOOK_DEADLINE_S, from here on):
    GitHub.com gives up on a webhook after 10 s. Past it the answer is 503, the delivery
    is left unfinished (claim released), and reconcile redelivers it (GitHub does not).
    """
    started = time.monotonic()
    if request.method != "POST":
        return _json(405, {"error": "send webhook deliveries with POST"}, {"Allow": "POST"})
    try:
        settings = _settings()
    except ConfigError as exc:
        return _not_configured(exc)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _json(413, {"error": "body is over GitHub's 25 MB webhook limit"})
    body = request.get_data(cache=True)
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        delivery = parse_delivery(headers, body, settings.webhook_secrets())
    except InvalidDelivery as exc:
        log.warning("rejected delivery: %s", exc, extra={"status": exc.status})
        return _json(exc.status, {"error": str(exc)})
    context = {"delivery": delivery.guid, "event": delivery.event}
    if delivery.event == "ping":
        log.info("ping received", extra=context)
        return _json(200, {"result": "pong", "delivery": delivery.guid})
    budget_s = settings.webhook_deadline_s
    try:
        with deadline.within(max(0.001, budget_s - (time.monotonic() - started))):
            result = deliveries.handle(_context(), delivery)
    except ConfigError as exc:
        return _not_configured(exc)
    except DeadlineExceeded as exc:  # before GitHubError: a cut write is both
        elapsed = time.monotonic() - started
        log.warning(
            "time budget of %g s ran out after %.2f s: %s", budget_s, elapsed, exc, extra=context
        )
        # No Retry-After: GitHub ignores it on webhooks and does not redeliver by itself.
        return _json(
            503,
            {
                "error": f"the webhook's time budget of {budget_s:g} s "
                f"(GOVERNOR_WEBHOOK_DEADLINE_S) ran out {exc.what}; the delivery was not "
                "finished (its claim is released) and reconcile redelivers it",
                "delivery": delivery.guid,
            },
        )
    except WriteContention as exc:
        log.warning("write contention: %s", exc, extra=context)
        return _unavailable(str(exc), 5)
    except RateLimited as exc:
        log.warning("GitHub rate limit: %s", exc, extra=context)
        return _unavailable(
            f"GitHub rate limit; retry after {exc.retry_after_s:.0f} s", exc.retry_after_s
        )
    except Exception:
        log.exception("delivery failed", extra=context)
        return _json(
            500,
            {
                "error": "the governor failed on this delivery; nothing was allowed, a governed "
                "SHA is held (governor_error), and it will be retried",
                "delivery": delivery.guid,
            },
        )
    log.info("delivery handled: %s", result.kind.value, extra=context)
    return _json(_status_of(result), {**to_json(result), "delivery": delivery.guid})


@functions_framework.http
@with_request_trace
def reconcile(request: flask.Request) -> flask.Response:
    """One reconcile run, for Cloud Scheduler (every 5 minutes, with an OIDC token).

    Who may call it is the platform's invoker check (infra/ lets only the scheduler's
    account in); the function trusts it and takes no input. Answers the run's summary.
    """
    if request.method not in ("POST", "GET"):
        return _json(405, {"error": "start a reconcile run with POST"}, {"Allow": "POST, GET"})
    from governor.flows import reconcile as reconciling

    try:
        settings = _settings()
        budget = reconciling.Budget(
            seconds=settings.reconcile_budget_s,
            max_repos=settings.reconcile_max_repos,
            max_redeliveries=settings.reconcile_max_redeliveries,
        )
        summary = reconciling.run(_context(), _governor().app, budget)
    except ConfigError as exc:
        return _not_configured(exc)
    except Exception:  # a whole run failing is the operator's to see: no details out
        log.exception("reconcile failed")
        return _unavailable("reconcile failed; the function's log says why", 60)
    log.info("reconcile done", extra={"status": summary.to_json()["actions"]})
    return _json(200, summary.to_json())


@functions_framework.http
@with_request_trace
def decision_page(request: flask.Request) -> flask.Response:
    """The decision page of one (repository, SHA), behind a signed, expiring link."""
    from governor.page import endpoint  # loaded on the first page, not for the webhook

    answer = endpoint.answer(
        request.method,
        request.args.to_dict(flat=False),
        settings=_settings,
        ledger=lambda: Ledger(_store()),
        now=datetime.now(UTC),
    )
    headers = {k: v for k, v in answer.headers.items() if k != "Content-Type"}
    return flask.Response(
        answer.body,
        status=answer.status,
        headers=headers,
        content_type=answer.headers["Content-Type"],
    )
