"""JSON log lines that Cloud Logging understands (`severity`, `message`, fields, trace).

A request's trace comes from its `X-Cloud-Trace-Context` (`TRACE/SPAN;o=1`, set by Google's
front end) or W3C `traceparent` (`00-TRACE-SPAN-FLAGS`) header. While the request is
handled, every line carries `logging.googleapis.com/trace` (`projects/<id>/traces/<trace>`)
and `logging.googleapis.com/spanId`, so one delivery's lines group under its request in
the console. The project id comes from `GOOGLE_CLOUD_PROJECT` (or `GCP_PROJECT`); without
one, no trace field is written. The headers come from anyone on the internet: a value
that is not exactly the documented shape is ignored.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Final, ParamSpec, TypeVar

import msgspec

_FIELDS: Final = ("repo", "sha", "delivery", "event", "decision", "reason", "status", "key")
_PROJECT_VARIABLES: Final = ("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT")
_PROJECT_ID: Final = re.compile(r"[a-z][a-z0-9.:-]{0,99}")
_CLOUD_TRACE: Final = re.compile(r"([0-9a-f]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?")
_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_MAX_HEADER: Final = 256

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Trace(msgspec.Struct, frozen=True):
    trace_id: str
    """32 lowercase hex digits, not all zero."""
    span_id: str | None
    """16 lowercase hex digits, not all zero (Cloud Logging's spanId form)."""
    sampled: bool | None


_trace: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "governor_request_trace", default=None
)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value if isinstance(value, str) and len(value) <= _MAX_HEADER else None
    return None


def _nonzero(hex_digits: str) -> bool:
    return hex_digits.strip("0") != ""


def parse_trace(headers: Mapping[str, str]) -> Trace | None:
    """The request's trace from its headers, or None if neither header is valid."""
    cloud = _header(headers, "x-cloud-trace-context")
    match = _CLOUD_TRACE.fullmatch(cloud.strip()) if cloud else None
    if match and _nonzero(match.group(1)):
        trace_id, span, option = match.groups()
        span_id = None
        if span is not None and 0 < int(span) < 2**64:
            span_id = f"{int(span):016x}"
        return Trace(trace_id, span_id, None if option is None else option == "1")
    parent = _header(headers, "traceparent")
    match = _TRACEPARENT.fullmatch(parent.strip()) if parent else None
    if match and _nonzero(match.group(1)) and _nonzero(match.group(2)):
        trace_id, span_id, flags = match.groups()
        return Trace(trace_id, span_id, bool(int(flags, 16) & 1))
    return None


def bind_request_trace(headers: Mapping[str, str]) -> contextvars.Token[Trace | None]:
    """Log this request's lines under its trace (None if the headers carry no valid one)."""
    return _trace.set(parse_trace(headers))


def reset_request_trace(token: contextvars.Token[Trace | None]) -> None:
    """Stop logging under the request's trace (the thread serves other requests next)."""
    _trace.reset(token)


def with_request_trace(handler: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate an HTTP function: its lines carry the trace of the request it handles."""

    @functools.wraps(handler)
    def traced(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        headers = getattr(args[0] if args else None, "headers", None)
        items = getattr(headers, "items", None)  # a Flask request's headers are no Mapping
        token = bind_request_trace(dict(items()) if callable(items) else {})
        try:
            return handler(*args, **kwargs)
        finally:
            reset_request_trace(token)

    return traced


def project_id() -> str | None:
    """The Google Cloud project the trace belongs to: GOOGLE_CLOUD_PROJECT or GCP_PROJECT."""
    for variable in _PROJECT_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value and _PROJECT_ID.fullmatch(value):
            return value
    return None


def trace_fields() -> dict[str, object]:
    """The Cloud Logging trace fields of the current request, if any (and a project id)."""
    trace, project = _trace.get(), project_id()
    if trace is None or project is None:
        return {}
    fields: dict[str, object] = {
        "logging.googleapis.com/trace": f"projects/{project}/traces/{trace.trace_id}"
    }
    if trace.span_id is not None:
        fields["logging.googleapis.com/spanId"] = trace.span_id
    if trace.sampled is not None:
        fields["logging.googleapis.com/trace_sampled"] = trace.sampled
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        for field in _FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value
        entry.update(trace_fields())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the `governor` loggers to stderr as one JSON object per line."""
    logger = logging.getLogger("governor")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
