"""infra/: what `terraform validate` would catch, and what no linter catches.

Terraform cannot run here (its providers cannot be downloaded), so the HCL is parsed with
python-hcl2 and every reference is resolved by hand; then the properties that matter for
the governor's security and correctness are asserted. The GitHub App manifest is checked
against the REST calls the code makes and the events it handles.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from governor.events import _HANDLED
from governor.settings import AppSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA = REPO_ROOT / "infra"
MANIFEST = INFRA / "github-app-manifest.json"
API = REPO_ROOT / "shared" / "governor" / "github" / "api.py"
APP_DOC = REPO_ROOT / "docs" / "github-app.md"
MAIN = REPO_ROOT / "functions" / "main.py"

RESOURCE_REF = re.compile(r"(?<![\w.])((?:google|random|time|null)_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")
NAMED_REF = re.compile(r"(?<![\w.])(var|local|module)\.([A-Za-z_][\w-]*)")
DATA_REF = re.compile(r"(?<![\w.])data\.([a-z0-9_]+)\.([A-Za-z_][\w-]*)")
INDEXED_REF = re.compile(r"(?<![\w.])([a-z0-9_]+)\.([A-Za-z_][\w-]*)\[\"([^\"]+)\"\]")


# ---------------------------------------------------------------- parsing


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def parse(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every top-level block of every *.tf in `directory`, merged by block kind."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            for kind, blocks in hcl2.load(handle).items():
                if not kind.startswith("__"):
                    merged.setdefault(kind, []).extend(blocks)
    return merged


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed block, keys included (map keys can hold expressions)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("__"):
                continue
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def expressions(text: str) -> Iterator[str]:
    """The `${...}` interpolations in a string (hcl2 renders every expression so)."""
    start = text.find("${")
    while start != -1:
        depth, index = 0, start + 1
        while index < len(text):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                break
            index += 1
        yield text[start + 2 : index]
        start = text.find("${", index)


class Config:
    def __init__(self, directory: Path) -> None:
        self.raw = parse(directory)
        self.variables = {unquote(k): v for b in self.raw.get("variable", []) for k, v in b.items()}
        self.locals = {k: v for b in self.raw.get("locals", []) for k, v in b.items()}
        self.outputs = {unquote(k): v for b in self.raw.get("output", []) for k, v in b.items()}
        self.resources: dict[tuple[str, str], dict[str, Any]] = {
            (unquote(kind), unquote(name)): body
            for block in self.raw.get("resource", [])
            for kind, named in block.items()
            for name, body in named.items()
        }
        self.data = {
            (unquote(kind), unquote(name)): body
            for block in self.raw.get("data", [])
            for kind, named in block.items()
            for name, body in named.items()
        }
        self.modules = {unquote(k) for b in self.raw.get("module", []) for k in b}

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (k, name), body in self.resources.items() if k == kind}

    def unresolved(self) -> list[str]:
        problems = []
        declared_named = {
            "var": set(self.variables),
            "local": set(self.locals),
            "module": self.modules,
        }
        for text in strings(self.raw):
            for expression in expressions(text):
                for kind, name in NAMED_REF.findall(expression):
                    if name not in declared_named[kind]:
                        problems.append(f"{kind}.{name} in {expression!r}")
                for kind, name in RESOURCE_REF.findall(expression):
                    if (kind, name) not in self.resources:
                        problems.append(f"resource {kind}.{name} in {expression!r}")
                for kind, name in DATA_REF.findall(expression):
                    if (kind, name) not in self.data:
                        problems.append(f"data.{kind}.{name} in {expression!r}")
                problems.extend(self._bad_keys(expression))
        return problems

    def _bad_keys(self, expression: str) -> Iterator[str]:
        """A string index into a for_each resource must be one of the keys it iterates."""
        for kind, name, key in INDEXED_REF.findall(expression):
            body = self.resources.get((kind, name))
            if body is None or "for_each" not in body:
                continue
            keys = self.for_each_keys(body["for_each"])
            if keys is not None and key not in keys:
                yield f'{kind}.{name}["{key}"]: not one of its for_each keys {sorted(keys)}'

    def for_each_keys(self, for_each: str) -> set[str] | None:
        maps = [
            m for m in re.findall(r"local\.(\w+)", for_each) if isinstance(self.locals.get(m), dict)
        ]
        if maps:
            return set(self.locals[maps[0]])
        listed = re.search(r"toset\(\[(.*)\]\)", for_each, re.S)
        if listed:
            return {unquote(item.strip()) for item in listed.group(1).split(",") if item.strip()}
        return None


@cache
def infra() -> Config:
    return Config(INFRA)


def one(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(blocks) == 1, blocks
    return blocks[0]


def evaluate(expression: str, variables: dict[str, int]) -> int:
    """An integer expression of variables and + / - (all the HCL arithmetic used here)."""
    text = re.sub(r"var\.(\w+)", lambda m: str(variables[m.group(1)]), expression)
    assert re.fullmatch(r"[\d\s+-]+", text), f"not simple arithmetic: {expression!r}"
    return sum(int(term) for term in re.findall(r"[+-]?\s*\d+", text.replace(" ", "")))


def variable_range(config: Config, name: str) -> list[int]:
    """The default and the bounds its validation allows (`var.x >= A && var.x <= B`)."""
    body = config.variables[name]
    values = [int(body["default"])]
    for validation in body.get("validation", []):
        condition = validation["condition"]
        values += [int(n) for n in re.findall(rf"var\.{name}\s*[<>]=\s*(\d+)", condition)]
    return values


# ---------------------------------------------------------------- references


def test_every_reference_resolves() -> None:
    assert infra().unresolved() == []


def test_every_variable_has_a_type_and_a_description() -> None:
    for name, body in infra().variables.items():
        assert "type" in body and unquote(body.get("description", "")), name


def test_outputs_are_there_and_resolve() -> None:
    config = infra()
    assert {"webhook_url", "decision_page_url", "reconcile_url", "state_bucket"} <= set(
        config.outputs
    )
    for name, body in config.outputs.items():
        assert unquote(body.get("description", "")), name


def test_the_reference_check_catches_a_broken_reference(tmp_path: Path) -> None:
    """The check above would fail on a typo: shown on a copy with one reference broken."""
    for path in INFRA.glob("*.tf"):
        text = path.read_text()
        if path.name == "scheduler.tf":
            text = text.replace(
                "google_service_account.scheduler.email",
                "google_service_account.schedular.email",
                1,
            )
        if path.name == "outputs.tf":
            text = text.replace("local.webhook_url", "local.webhook_uri", 1)
        if path.name == "functions.tf":
            text = text.replace('governor["reconcile"]', 'governor["reconciler"]', 1)
        (tmp_path / path.name).write_text(text)
    problems = "\n".join(Config(tmp_path).unresolved())
    assert "google_service_account.schedular" in problems
    assert "local.webhook_uri" in problems
    assert '["reconciler"]' in problems


def test_the_tfvars_example_sets_only_declared_variables() -> None:
    example = (INFRA / "terraform.tfvars.example").read_text()
    names = re.findall(r"^\s*#?\s*([a-z_]+)\s*=", example, re.M)
    assert names and set(names) <= set(infra().variables)


# ---------------------------------------------------------------- semantics


def functions_map() -> dict[str, dict[str, Any]]:
    value: dict[str, dict[str, Any]] = infra().locals["functions"]
    return value


def test_the_three_functions_and_their_entry_points() -> None:
    config = infra()
    assert set(functions_map()) == {"github_webhook", "decision_page", "reconcile"}
    assert set(config.locals["function_names"]) == set(functions_map())
    function = config.of_type("google_cloudfunctions2_function")["governor"]
    build = one(function["build_config"])
    assert build["entry_point"] == "${each.key}"
    assert unquote(build["runtime"]).startswith("python3")
    storage = one(one(build["source"])["storage_source"])
    assert storage["object"] == "${google_storage_bucket_object.source.name}"


@pytest.mark.parametrize("entry_point", ["github_webhook", "decision_page", "reconcile"])
def test_entry_point_is_a_function_in_main_py(entry_point: str) -> None:
    defined = {
        node.name for node in ast.parse(MAIN.read_text()).body if isinstance(node, ast.FunctionDef)
    }
    assert entry_point in defined


def invoker_bindings() -> dict[str, dict[str, Any]]:
    config = infra()
    assert not config.of_type("google_cloudfunctions2_function_iam_member")
    assert not config.of_type("google_cloudfunctions2_function_iam_binding")
    return {
        **config.of_type("google_cloud_run_v2_service_iam_member"),
        **config.of_type("google_cloud_run_service_iam_member"),
    }


def test_invokers_are_run_invoker_on_each_functions_cloud_run_service() -> None:
    bindings = invoker_bindings()
    assert bindings
    covered: set[str] = set()
    for name, body in bindings.items():
        assert unquote(body["role"]) == "roles/run.invoker", name
        service = body.get("name") or body.get("service")
        match = re.fullmatch(
            r"\$\{google_cloudfunctions2_function\.governor\[(each\.key|\"(\w+)\")\]"
            r"\.service_config\[0\]\.service\}",
            service,
        )
        assert match, f"{name}: not a function's Cloud Run service: {service}"
        if match.group(2):
            covered.add(match.group(2))
        else:  # for_each over the functions, filtered by their `public` flag
            assert "fn.public" in body["for_each"] and "local.functions" in body["for_each"]
            covered |= {f for f, spec in functions_map().items() if spec["public"] is True}
    assert covered == set(functions_map())


def test_public_functions_are_exactly_webhook_and_decision_page() -> None:
    public = {f for f, spec in functions_map().items() if spec["public"] is True}
    assert public == {"github_webhook", "decision_page"}
    body = invoker_bindings()["public_invoker"]
    assert unquote(body["member"]) == "allUsers"


def test_reconcile_is_invoked_only_by_the_scheduler_account() -> None:
    members = [
        unquote(body["member"])
        for body in invoker_bindings().values()
        if "reconcile" in (body.get("name") or body.get("service") or "")
    ]
    assert members == ["serviceAccount:${google_service_account.scheduler.email}"]
    assert functions_map()["reconcile"]["public"] is False
    # and the scheduler's account is granted nothing else
    for (_, name), body in infra().resources.items():
        if "google_service_account.scheduler.email" in json.dumps(body.get("member", "")):
            assert name == "reconcile_invoker"


def test_scheduler_calls_reconcile_every_5_minutes_with_an_oidc_token_for_its_uri() -> None:
    job = infra().of_type("google_cloud_scheduler_job")["reconcile"]
    assert unquote(job["schedule"]) == "*/5 * * * *"
    target = one(job["http_target"])
    uri = '${google_cloudfunctions2_function.governor["reconcile"].service_config[0].uri}'
    assert target["uri"] == uri
    token = one(target["oidc_token"])
    assert token["audience"] == uri
    assert token["service_account_email"] == "${google_service_account.scheduler.email}"


def test_attempt_deadline_covers_reconciles_time_budget() -> None:
    config = infra()
    job = config.of_type("google_cloud_scheduler_job")["reconcile"]
    deadline = re.fullmatch(r"\"\$\{(.+)\}s\"", job["attempt_deadline"])
    assert deadline, job["attempt_deadline"]
    timeout = re.fullmatch(r"\$\{(.+)\}", str(functions_map()["reconcile"]["timeout_seconds"]))
    assert timeout
    for value in variable_range(config, "reconcile_timeout_seconds"):
        variables = {"reconcile_timeout_seconds": value}
        budget = evaluate(timeout.group(1), variables)
        assert budget <= evaluate(deadline.group(1), variables) <= 1800, value


def test_records_expire_by_kind_and_the_state_never_does() -> None:
    """deliveries/ and runs/ after retention_days (>= 4: longer than GitHub's 3-day
    redelivery window), decisions/ after audit_retention_days; the release states
    (repos/) and reconcile's cursor match no rule."""
    config = infra()
    bucket = config.of_type("google_storage_bucket")["state"]
    assert bucket["uniform_bucket_level_access"] is True
    assert unquote(bucket["public_access_prevention"]) == "enforced"
    rules = bucket["lifecycle_rule"]
    ages_by_prefix: dict[str, str] = {}
    for rule in rules:
        condition = one(rule["condition"])
        prefixes = [unquote(p) for p in condition.get("matches_prefix", [])]
        assert prefixes, "a lifecycle rule without a prefix would expire the release state"
        age = condition["age"]
        assert isinstance(age, str), "ages come from variables the functions are given too"
        for prefix in prefixes:
            ages_by_prefix[prefix] = age[len("${var.") : -1]
    assert ages_by_prefix == {
        "deliveries/": "retention_days",
        "runs/": "retention_days",
        "decisions/": "audit_retention_days",
    }
    assert min(variable_range(config, "retention_days")) >= 4
    # The functions delete by the same ages where no lifecycle rule reaches (local store).
    settings = (INFRA / "locals.tf").read_text()
    assert "GOVERNOR_RETENTION_DAYS          = tostring(var.retention_days)" in settings
    assert "GOVERNOR_AUDIT_RETENTION_DAYS    = tostring(var.audit_retention_days)" in settings


def test_the_functions_account_has_no_project_level_role() -> None:
    config = infra()
    for kind, name in config.resources:
        if kind.startswith(("google_project_iam", "google_organization_iam", "google_folder_iam")):
            body = json.dumps(config.resources[(kind, name)])
            assert "google_service_account.functions" not in body, f"{kind}.{name}"
    grants = [
        (kind, body)
        for (kind, _), body in config.resources.items()
        if "google_service_account.functions.email" in json.dumps(body.get("member", ""))
    ]
    kinds = {kind for kind, _ in grants}
    assert kinds == {"google_storage_bucket_iam_member", "google_secret_manager_secret_iam_member"}
    for kind, body in grants:
        if kind == "google_storage_bucket_iam_member":
            assert body["bucket"] == "${google_storage_bucket.state.name}"
            assert unquote(body["role"]) in {
                "roles/storage.objectUser",
                "roles/storage.objectAdmin",
            }
        else:
            assert unquote(body["role"]) == "roles/secretmanager.secretAccessor"


def test_functions_environment_uses_the_real_setting_names() -> None:
    config = infra()
    settings = {f"GOVERNOR_{name.upper()}" for name in AppSettings.model_fields}
    env = config.locals["function_env"]
    plain = set(re.findall(r"\b(GOVERNOR_\w+)\s*=", json.dumps(env) + env_text()))
    function = config.of_type("google_cloudfunctions2_function")["governor"]
    service = one(function["service_config"])
    secret_keys = {unquote(s["key"]) for s in service["secret_environment_variables"]}
    assert secret_keys == {"GOVERNOR_WEBHOOK_SECRET", "GOVERNOR_LINK_SECRET"}
    assert plain | secret_keys <= settings
    assert {"GOVERNOR_STORE_URL", "GOVERNOR_GITHUB_APP_ID"} <= plain
    # the private key is a file, where GOVERNOR_GITHUB_PRIVATE_KEY_PATH points
    volume = one(service["secret_volumes"])
    assert volume["mount_path"] == "${local.private_key_dir}"
    assert one(volume["versions"])["path"] == "${local.private_key_file}"
    assert "GOVERNOR_GITHUB_PRIVATE_KEY_PATH" in plain
    assert "GOVERNOR_GITHUB_PRIVATE_KEY" not in plain | secret_keys


def env_text() -> str:
    text = (INFRA / "locals.tf").read_text()
    start = text.index("function_env")
    return text[start:]


# ---------------------------------------------------------------- the App manifest

# (method, path pattern of segments after /repos/{owner}/{repo}) -> permission needed.
# "*" is any one segment. A call the code makes that is not here fails the test below:
# add it with the permission GitHub documents for it, then to the manifest.
ENDPOINT_PERMISSIONS: list[tuple[str, tuple[str, ...], tuple[str, str]]] = [
    ("GET", (), ("metadata", "read")),
    ("GET", ("collaborators", "*", "permission"), ("metadata", "read")),
    ("GET", ("contents",), ("contents", "read")),
    ("GET", ("compare", "*"), ("contents", "read")),
    ("GET", ("commits", "*"), ("contents", "read")),
    ("GET", ("commits", "*", "pulls"), ("pull_requests", "read")),
    ("POST", ("actions", "workflows", "*", "dispatches"), ("actions", "write")),
    ("GET", ("actions", "workflows", "*", "runs"), ("actions", "read")),
    ("GET", ("actions", "runs", "*"), ("actions", "read")),
    ("POST", ("actions", "runs", "*", "deployment_protection_rule"), ("deployments", "write")),
    ("POST", ("statuses", "*"), ("statuses", "write")),
    ("GET", ("issues",), ("issues", "read")),
    ("POST", ("issues",), ("issues", "write")),
    ("POST", ("issues", "*", "comments"), ("issues", "write")),
]
LEVEL = {"read": 1, "write": 2}
VERBS = {
    "get": "GET",
    "paginate": "GET",
    "post": "POST",
    "patch": "PATCH",
    "put": "PUT",
    "delete": "DELETE",
}


def repo_calls() -> list[tuple[str, tuple[str, ...], str]]:
    """(method, segments, where) of every repository call in RepoApi, from its source."""
    tree = ast.parse(API.read_text())
    repo_api = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RepoApi")
    calls = []
    for method in repo_api.body:
        if not isinstance(method, ast.FunctionDef) or method.name.startswith("_"):
            continue
        verbs, paths = set(), []
        for node in ast.walk(method):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr == "_client":
                verbs.add(VERBS[node.func.attr])
            if node.func.attr == "_repo":
                paths.append(
                    tuple(a.value if isinstance(a, ast.Constant) else "*" for a in node.args)
                )
        assert len(verbs) <= 1, f"RepoApi.{method.name} mixes {verbs}: split it"
        calls += [(verb, path, method.name) for verb in verbs for path in paths]
    return calls


def required_permissions() -> dict[str, str]:
    needed: dict[str, str] = {"metadata": "read"}  # every App has it
    for verb, path, where in repo_calls():
        matches = [
            perm
            for m, pattern, perm in ENDPOINT_PERMISSIONS
            if m == verb
            and len(pattern) == len(path)
            and all(p in ("*", s) for p, s in zip(pattern, path, strict=True))
        ]
        assert matches, f"RepoApi.{where}: {verb} {'/'.join(path)} has no known permission"
        name, level = matches[0]
        if LEVEL[level] > LEVEL[needed.get(name, "read")] or name not in needed:
            needed[name] = level
    return needed


def manifest() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(MANIFEST.read_text())
    return value


def test_code_calls_are_all_mapped() -> None:
    calls = repo_calls()
    assert len(calls) >= 12  # the parser found RepoApi's calls
    required_permissions()


def test_manifest_grants_exactly_the_permissions_the_code_needs() -> None:
    assert manifest()["default_permissions"] == required_permissions()


def test_manifest_subscribes_to_exactly_the_events_the_governor_handles() -> None:
    handled = {event for event, _ in _HANDLED}
    assert set(manifest()["default_events"]) == handled


def test_manifest_fields() -> None:
    app = manifest()
    assert app["hook_attributes"]["active"] is True
    assert app["hook_attributes"]["url"].startswith("https://")
    assert app["public"] is False
    assert app["request_oauth_on_install"] is False


def test_docs_list_the_same_permissions_as_the_manifest() -> None:
    names = {
        "Actions": "actions",
        "Commit statuses": "statuses",
        "Deployments": "deployments",
        "Issues": "issues",
        "Contents": "contents",
        "Pull requests": "pull_requests",
        "Metadata": "metadata",
    }
    section = APP_DOC.read_text().split("### Repository permissions", 1)[1].split("###", 1)[0]
    rows = re.findall(r"^\| ([A-Z][\w ]+?) \| \*\*(Read and write|Read-only)\*\*", section, re.M)
    documented = {names[n]: "write" if a == "Read and write" else "read" for n, a in rows}
    assert documented == manifest()["default_permissions"]
