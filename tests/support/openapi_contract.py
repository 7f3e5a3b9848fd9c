"""GitHub's REST contract, from the OpenAPI subset in tests/fixtures/github/.

`OpenApiContract` answers two questions about a request: which documented operation is it
(`match`), and does it respect that operation's contract (`validate`): declared query
parameters with values of the declared type, and a JSON body that validates against the
request schema. `validate_response` checks an answer against the documented response
schema, so the fake GitHub can be pinned to the same description the client is.

The description is OpenAPI 3.0: `nullable: true` is translated to "or null" before the
schemas are handed to jsonschema (Draft 4 rules, which is what OpenAPI 3.0 schemas are
closest to). Formats are not checked, as GitHub's own examples do not always honour them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft4Validator
from jsonschema.exceptions import best_match

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "github" / "openapi-subset.json"

# Path parameters that may span several segments: the file path of repos/get-content and
# the `BASE...HEAD` of the compare endpoint (branch names contain slashes).
GREEDY_PARAMS: frozenset[tuple[str, str]] = frozenset(
    {("repos/get-content", "path"), ("repos/compare-commits-with-basehead", "basehead")}
)

_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")
_INTEGER = re.compile(r"^-?\d+$")


class ContractViolation(Exception):
    """A request (or response) that GitHub's published description does not allow."""


@dataclass(frozen=True)
class Operation:
    """One documented operation, as matched against a concrete request path."""

    operation_id: str
    method: str
    template: str
    path_params: dict[str, str] = field(default_factory=dict)
    docs_url: str = "https://docs.github.com/rest"


def nullable_to_jsonschema(schema: Any) -> Any:
    """Translate OpenAPI 3.0 `nullable: true` into JSON Schema ("this, or null")."""
    if isinstance(schema, list):
        return [nullable_to_jsonschema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("example", "examples", "x-github-breaking-changes"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: nullable_to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = nullable_to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [nullable_to_jsonschema(sub) for sub in value]
        else:
            out[key] = value
    if out.pop("nullable", False) is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _allows_type(schema: dict[str, Any], wanted: str) -> bool:
    if schema.get("type") == wanted:
        return True
    return any(
        isinstance(sub, dict) and _allows_type(sub, wanted)
        for key in ("anyOf", "oneOf", "allOf")
        for sub in schema.get(key, [])
    )


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    """A query/path string as the typed value GitHub would read it as."""
    if _allows_type(schema, "integer") and _INTEGER.match(value):
        return int(value)
    if _allows_type(schema, "boolean") and value in ("true", "false"):
        return value == "true"
    return value


def _first_error(validator: Draft4Validator, instance: Any) -> str | None:
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"at {where}: {error.message}" if where else error.message


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    operation_id: str
    docs_url: str
    pattern: re.Pattern[str]
    param_names: tuple[str, ...]
    rank: tuple[int, ...]
    path_schemas: dict[str, Draft4Validator]
    query_schemas: dict[str, Draft4Validator]
    body_validator: Draft4Validator | None
    body_required: bool
    responses: dict[str, Draft4Validator | None]


class OpenApiContract:
    """The operations of the OpenAPI subset, matched and validated like GitHub routes them."""

    def __init__(self, path: Path = DEFAULT_PATH) -> None:
        self.path = path
        spec = json.loads(path.read_text(encoding="utf-8"))
        self._routes: list[_Route] = []
        for template, item in spec["paths"].items():
            shared = item.get("parameters", [])
            for method, op in item.items():
                if method not in _HTTP_METHODS:
                    continue
                self._routes.append(self._route(method.upper(), template, op, shared))

    @staticmethod
    def _route(
        method: str, template: str, op: dict[str, Any], shared: list[dict[str, Any]]
    ) -> _Route:
        operation_id = op["operationId"]
        params = [*shared, *op.get("parameters", [])]
        regex = ["^"]
        names: list[str] = []
        rank: list[int] = []
        for segment in template.strip("/").split("/"):
            regex.append("/")
            name_match = re.fullmatch(r"\{(\w+)\}", segment)
            if name_match is None:
                regex.append(re.escape(segment))
                rank.append(0)
                continue
            name = name_match.group(1)
            names.append(name)
            greedy = (operation_id, name) in GREEDY_PARAMS
            regex.append("(.+)" if greedy else "([^/]+)")
            rank.append(2 if greedy else 1)
        regex.append("$")

        def validator(schema: dict[str, Any]) -> Draft4Validator:
            return Draft4Validator(nullable_to_jsonschema(schema))

        path_schemas = {
            p["name"]: validator(p.get("schema", {})) for p in params if p["in"] == "path"
        }
        query_schemas = {
            p["name"]: validator(p.get("schema", {})) for p in params if p["in"] == "query"
        }
        body_validator: Draft4Validator | None = None
        body_required = False
        request_body = op.get("requestBody")
        if request_body is not None:
            body_required = bool(request_body.get("required", False))
            media = request_body.get("content", {}).get("application/json")
            if media is not None:
                body_validator = validator(media.get("schema", {}))
        responses: dict[str, Draft4Validator | None] = {}
        for status, response in op.get("responses", {}).items():
            media = response.get("content", {}).get("application/json")
            responses[status] = (
                validator(media["schema"]) if media is not None and "schema" in media else None
            )
        return _Route(
            method=method,
            template=template,
            operation_id=operation_id,
            docs_url=op.get("externalDocs", {}).get("url", "https://docs.github.com/rest"),
            pattern=re.compile("".join(regex)),
            param_names=tuple(names),
            rank=tuple(rank),
            path_schemas=path_schemas,
            query_schemas=query_schemas,
            body_validator=body_validator,
            body_required=body_required,
            responses=responses,
        )

    @property
    def operation_ids(self) -> list[str]:
        return [route.operation_id for route in self._routes]

    def _find(self, method: str, path: str) -> tuple[_Route, dict[str, str]]:
        raw_path = path.split("?", 1)[0]
        candidates: list[tuple[_Route, dict[str, str]]] = []
        for route in self._routes:
            if route.method != method.upper():
                continue
            found = route.pattern.match(raw_path)
            if found is None:
                continue
            values = {
                name: unquote(v) for name, v in zip(route.param_names, found.groups(), strict=True)
            }
            candidates.append((route, values))
        if not candidates:
            raise ContractViolation(f"no operation for {method.upper()} {raw_path}")
        # Literal segments beat parameters, parameters beat multi-segment parameters.
        candidates.sort(key=lambda c: c[0].rank)
        return candidates[0]

    def match(self, method: str, path: str) -> Operation:
        route, values = self._find(method, path)
        return Operation(route.operation_id, route.method, route.template, values, route.docs_url)

    def validate(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes | None,
        content_type: str | None,
    ) -> Operation:
        """The matched operation, or ContractViolation naming the first broken rule."""
        route, values = self._find(method, path)
        op_name = f"{route.operation_id} ({route.method} {route.template})"
        self._check_parameters(route, op_name, values, query)
        operation = Operation(
            route.operation_id, route.method, route.template, values, route.docs_url
        )
        self._check_body(route, op_name, body, content_type)
        return operation

    @staticmethod
    def _check_parameters(
        route: _Route, op_name: str, values: dict[str, str], query: dict[str, list[str]]
    ) -> None:
        for name, value in values.items():
            schema_validator = route.path_schemas.get(name)
            if schema_validator is None:
                continue
            error = _first_error(schema_validator, _coerce(value, schema_validator.schema))
            if error is not None:
                raise ContractViolation(f"{op_name}: path parameter {name}={value!r}: {error}")
        for name, items in query.items():
            schema_validator = route.query_schemas.get(name)
            if schema_validator is None:
                raise ContractViolation(f"{op_name}: undeclared query parameter {name!r}")
            for item in items:
                error = _first_error(schema_validator, _coerce(item, schema_validator.schema))
                if error is not None:
                    raise ContractViolation(f"{op_name}: query parameter {name}={item!r}: {error}")

    @staticmethod
    def _check_body(
        route: _Route, op_name: str, body: bytes | None, content_type: str | None
    ) -> None:
        has_body = bool(body and body.strip())
        if route.body_validator is None:
            if has_body:
                raise ContractViolation(f"{op_name}: takes no request body")
            return
        if not has_body:
            if route.body_required:
                raise ContractViolation(f"{op_name}: request body is required")
            return
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if not _JSON_TYPE.match(media_type):
            raise ContractViolation(
                f"{op_name}: request body must be sent as application/json, not {content_type!r}"
            )
        assert body is not None
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractViolation(f"{op_name}: request body is not JSON: {exc}") from exc
        error = _first_error(route.body_validator, document)
        if error is not None:
            raise ContractViolation(f"{op_name}: request body: {error}")
        return

    def validate_response(self, method: str, path: str, status: int, body: bytes | None) -> None:
        """Check an answer against the documented response for its status.

        Statuses the description does not list (401 and 429 are rarely listed, though GitHub
        sends them everywhere) are not checked; a documented status without a JSON schema
        (204) must come without a body.
        """
        route, _ = self._find(method, path)
        if str(status) not in route.responses:
            return
        schema_validator = route.responses[str(status)]
        op_name = f"{route.operation_id} {status}"
        if schema_validator is None:
            if body and body.strip():
                raise ContractViolation(f"{op_name}: documented without a body, got one")
            return
        try:
            document = json.loads(body or b"")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractViolation(f"{op_name}: response is not JSON: {exc}") from exc
        error = _first_error(schema_validator, document)
        if error is not None:
            raise ContractViolation(f"{op_name}: response: {error}")
