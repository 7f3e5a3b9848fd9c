"""HTTP entry points (Cloud Functions gen2 / functions-framework). Nothing else lives here.

Each function turns a Flask request into plain values, calls the governor library and
turns its answer into a response.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import flask
import functions_framework
from governor import __version__
from governor.config import AppSettings, ConfigError, load_settings
from governor.events import MAX_BODY_BYTES, InvalidDelivery, parse_delivery
from governor.logs import configure_logging
from governor.store import ObjectStore, StoreError, open_store

configure_logging()
log = logging.getLogger("governor.functions")


@functools.cache
def _settings() -> AppSettings:
    return load_settings()


@functools.cache
def _store() -> ObjectStore:
    settings = _settings()
    return open_store(settings.store_url, write_timeout_s=settings.write_timeout_s)


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> flask.Response:
    return flask.Response(
        json.dumps(body, sort_keys=True) + "\n",
        status=status,
        headers=headers,
        mimetype="application/json",
    )


def _unavailable(message: str, retry_after_s: int) -> flask.Response:
    return _json(503, {"error": message}, {"Retry-After": str(retry_after_s)})


@functions_framework.http
def health(request: flask.Request) -> flask.Response:
    """200 when settings load and the store answers; 503 saying what is wrong otherwise."""
    try:
        store = _store()
        store.get("health/probe")
    except ConfigError as exc:
        return _unavailable(f"governor is not configured: {exc}", 60)
    except StoreError as exc:
        return _unavailable(f"store is not usable: {exc}", 30)
    return _json(200, {"status": "ok", "version": __version__, "store": store.url})


@functions_framework.http
def github_webhook(request: flask.Request) -> flask.Response:
    """Receive a GitHub webhook delivery: signature first, then everything else."""
    if request.method != "POST":
        return _json(405, {"error": "send webhook deliveries with POST"}, {"Allow": "POST"})
    try:
        settings = _settings()
    except ConfigError as exc:
        return _unavailable(f"governor is not configured: {exc}", 60)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _json(413, {"error": "body is over GitHub's 25 MB webhook limit"})
    body = request.get_data(cache=True)
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        delivery = parse_delivery(
            headers, body, settings.webhook_secret.get_secret_value().encode()
        )
    except InvalidDelivery as exc:
        log.warning("rejected delivery: %s", exc, extra={"status": exc.status})
        return _json(exc.status, {"error": str(exc)})
    context = {"delivery": delivery.guid, "event": delivery.event}
    if delivery.event == "ping":
        log.info("ping received", extra=context)
        return _json(200, {"result": "pong", "delivery": delivery.guid})
    log.info("delivery accepted, no handler yet", extra=context)
    return _json(
        200,
        {
            "result": "ignored",
            "why": f"no handler for '{delivery.event}' events in this version",
            "delivery": delivery.guid,
        },
    )
