"""The policy review of pull requests that change `.github/release-governor.yml`: a commit
status of its own (`release-governor/policy`) on the head SHA.

In-process through the delivery router with an injected clock and a local store (GitHub
is the fake on loopback, reached through the real App client, every request checked
against GitHub's OpenAPI description), then once end to end over HTTP through
functions-framework. Payloads start from GitHub's example `pull_request` `synchronize`
delivery (tests/fixtures/github/webhooks-policy-review/pull_request.synchronize.22.json).
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from governor.events import (
    _GUID,
    Delivery,
    PullRequestChanged,
    PullRequestLabeled,
    classify,
    identity,
)
from governor.events import Ignored as IgnoredEvent
from governor.flows import delivery as deliveries
from governor.flows import policy_review
from governor.flows.context import Context, Trusted, current_wave
from governor.flows.results import FlowResult, Ignored, to_json
from governor.github.api import GitHubApp, RepoApi
from governor.ledger import Ledger
from governor.policy import POLICY_PATH, Mode, parse_policy
from governor.settings import AppSettings
from governor.store import open_store

from tests.support.e2e import APP_ID, deployed_base, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import BASE_POLICY, WEBHOOKS, Governed, sha_for
from tests.support.keys import rsa_key_pair

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
CONTEXT = "release-governor/policy"
_numbers = itertools.count(100)

TRUSTED = (
    BASE_POLICY
    + """max_deploys_per_hour: 4
cooldown_minutes: 30
high_risk_paths: ["infra/**", "*.tf"]
"""
)
EXAMPLES = WEBHOOKS.parent / "webhooks-policy-review"
"""GitHub's examples of the actions this flow handles (tests/fixtures/github/README.md)."""
HOSTILE = "\x1b[31m<img src=x onerror=alert(1)>\nowned\u202e"


# -- set-up: a recording GitHub port, a world, pull requests -----------------------------


class _RecordingApi:
    """A RepoApi that notes each call with the read wave (or thread) it ran on."""

    def __init__(self, api: RepoApi, calls: list[tuple[str, str]]) -> None:
        self._api, self._calls = api, calls

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((current_wave() or threading.current_thread().name, name))
            return method(*args, **kwargs)

        return call


@dataclass
class Port:
    app: GitHubApp
    bot: str
    calls: list[tuple[str, str]] = field(default_factory=list)

    def repo(self, installation_id: int, full_name: str) -> RepoApi:
        return _RecordingApi(self.app.repo(installation_id, full_name), self.calls)  # type: ignore[return-value]

    def bot_login(self) -> str:
        return self.bot

    def round_trips(self) -> int:
        waves = {name for name, _ in self.calls if name.startswith("read-wave-")}
        alone = [name for name, _ in self.calls if not name.startswith("read-wave-")]
        return len(waves) + len(alone)


@dataclass
class World:
    fake: FakeGitHub
    gov: Governed
    ctx: Context
    port: Port

    def deliver(self, payload: dict[str, Any]) -> FlowResult:
        self.port.calls.clear()
        return deliveries.handle(self.ctx, Delivery(str(uuid.uuid4()), "pull_request", payload))

    def policy_statuses(self, sha: str) -> list[dict[str, Any]]:
        return [s for s in self.gov.repo.statuses(sha) if s["context"] == CONTEXT]

    def status_calls(self) -> list[dict[str, Any]]:
        """Every status GitHub was asked to create on this repository, in order."""
        return [
            c.json
            for c in self.fake.calls_to("repos/create-commit-status")
            if f"/repos/{self.gov.repo.full_name}/" in c.path
        ]


@pytest.fixture(scope="module")
def fake_and_app() -> Iterator[tuple[FakeGitHub, GitHubApp]]:
    private, public = rsa_key_pair()
    with FakeGitHub(app_id=APP_ID, public_key_pem=public) as github:
        yield github, GitHubApp(github.url, APP_ID, private, timeout_s=10)


def _world(fake_and_app: tuple[FakeGitHub, GitHubApp], tmp_path: Path, **settings: Any) -> World:
    fake, app = fake_and_app
    url = (tmp_path / "store").as_uri()
    port = Port(app, fake.bot_login)
    config = AppSettings(store_url=url, webhook_secret="s" * 32, **settings)
    ctx = Context(config, Ledger(open_store(url)), port, lambda: START, timedelta(seconds=120))
    gov = new_repo(fake, url, "http://unused.invalid")
    return World(fake, gov, ctx, port)


@pytest.fixture
def world(fake_and_app: tuple[FakeGitHub, GitHubApp], tmp_path: Path) -> Iterator[World]:
    made = _world(fake_and_app, tmp_path)
    yield made
    assert made.fake.violations == []


def pull_request(
    gov: Governed, policy: str | None, *, base: str | None = None, changes: list[str] | None = None
) -> tuple[str, str]:
    """A head commit on a branch off `base` (default: main's tip) with `policy` as its file
    (None: the commit deletes the file; `changes` alone: the file is left as it was).
    Returns (head, base)."""
    base = base or gov.repo.tip()
    assert base is not None
    number = next(_numbers)
    head = sha_for(f"{gov.repo.full_name}:pr-{number}")
    files = [{"filename": name, "status": "modified"} for name in changes or []]
    if policy is None:
        files.append({"filename": POLICY_PATH, "status": "removed"})
    elif changes is None:
        files.append({"filename": POLICY_PATH, "status": "modified"})
    gov.repo.add_commit(head, files=files, parent=base, branch=f"change-{number}")
    if policy is not None and changes is None:
        gov.repo.set_file(POLICY_PATH, policy, ref=head)
    return head, base


def synchronize(
    gov: Governed, head: str, base: str, *, action: str = "synchronize", number: int = 7
) -> dict[str, Any]:
    """GitHub's example `synchronize` delivery, moved to this repository and these SHAs."""
    payload: dict[str, Any] = json.loads(
        (EXAMPLES / "pull_request.synchronize.22.json").read_text()
    )
    repository = gov.repo.repo_json()
    pull = payload["pull_request"]
    pull["number"] = payload["number"] = number
    pull["head"].update({"sha": head, "repo": repository})
    pull["base"].update({"sha": base, "repo": repository, "ref": gov.repo.default_branch})
    payload.update(
        {
            "action": action,
            "after": head,
            "repository": repository,
            "installation": {"id": gov.repo.installation_id},
        }
    )
    return payload


def _only_status(world: World, head: str) -> dict[str, Any]:
    statuses = world.policy_statuses(head)
    assert len(statuses) == 1, statuses
    assert world.status_calls() == [
        {
            "state": statuses[0]["state"],
            "context": CONTEXT,
            "description": statuses[0]["description"],
        }
    ]
    return statuses[0]


# -- the event -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_opened_synchronize_and_reopened_are_typed_with_an_identity_from_the_payload(
    action: str,
) -> None:
    payload = json.loads((EXAMPLES / "pull_request.synchronize.22.json").read_text())
    payload["action"] = action

    event = classify(Delivery("guid-1", "pull_request", payload))

    assert isinstance(event, PullRequestChanged)
    pull = payload["pull_request"]
    assert event.pull_request.head.sha == pull["head"]["sha"]
    assert event.pull_request.base.sha == pull["base"]["sha"]
    assert event.from_fork is False
    key = identity(event)
    assert key == f"policy-pr-{payload['repository']['id']}-2-{pull['head']['sha']}"
    assert _GUID.fullmatch(key)


def test_github_s_example_opened_delivery_is_typed_and_a_fork_or_deleted_head_is_told() -> None:
    payload = json.loads((EXAMPLES / "pull_request.opened.12.json").read_text())
    event = classify(Delivery("guid-2", "pull_request", payload))
    assert isinstance(event, PullRequestChanged) and event.action == "opened"
    payload["pull_request"]["head"]["repo"] = None  # the fork was deleted
    deleted = classify(Delivery("guid-3", "pull_request", payload))
    assert isinstance(deleted, PullRequestChanged) and deleted.from_fork


def test_labeled_is_still_the_approval_event_and_other_actions_are_not_used() -> None:
    labeled = json.loads((WEBHOOKS / "pull_request.labeled.8.json").read_text())
    assert isinstance(classify(Delivery("g", "pull_request", labeled)), PullRequestLabeled)
    closed = json.loads((WEBHOOKS / "pull_request.closed.3.json").read_text())
    assert isinstance(classify(Delivery("g", "pull_request", closed)), IgnoredEvent)


def test_a_payload_without_a_usable_base_sha_is_ignored_with_the_field_named() -> None:
    payload = json.loads((EXAMPLES / "pull_request.synchronize.22.json").read_text())
    payload["pull_request"]["base"]["sha"] = None
    ignored = classify(Delivery("g", "pull_request", payload))
    assert isinstance(ignored, IgnoredEvent) and "pull_request.base.sha" in ignored.why


# -- the flow --------------------------------------------------------------------------------


def test_a_pull_request_that_leaves_the_policy_alone_posts_nothing(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    head, base = pull_request(world.gov, TRUSTED, changes=["src/app.py"])

    result = world.deliver(synchronize(world.gov, head, base))

    assert result == Ignored(policy_review.UNCHANGED)
    assert world.status_calls() == []
    assert world.gov.repo.statuses(head) == []


def test_an_invalid_policy_fails_its_status_naming_the_problem(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    head, base = pull_request(world.gov, BASE_POLICY + "approval:\n  modee: label\n")

    result = to_json(world.deliver(synchronize(world.gov, head, base)))

    assert result["result"] == "policy_reviewed" and result["verdict"] == "invalid", result
    status = _only_status(world, head)
    assert status["state"] == "failure"
    assert status["description"].startswith("invalid: approval.modee: unknown key")
    assert world.port.round_trips() == 2, world.port.calls  # one read wave, the status


def test_relaxing_the_trusted_policy_fails_naming_the_relaxed_keys(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    relaxed = (
        BASE_POLICY + 'max_deploys_per_hour: 10\ncooldown_minutes: 30\nhigh_risk_paths: ["*.tf"]\n'
    )
    head, base = pull_request(world.gov, relaxed)

    result = to_json(world.deliver(synchronize(world.gov, head, base)))

    assert result["verdict"] == "relaxes", result
    assert result["keys"] == ["high_risk_paths", "max_deploys_per_hour"]
    status = _only_status(world, head)
    assert status["state"] == "failure"
    assert status["description"] == (
        "relaxes the trusted policy once deployed: high_risk_paths, max_deploys_per_hour"
    )


def test_a_stricter_policy_succeeds_naming_what_tightens(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    stricter = TRUSTED.replace("cooldown_minutes: 30", "cooldown_minutes: 60") + (
        "require_approval_for_first_deploy: true\n"
    )
    head, base = pull_request(world.gov, stricter)

    result = to_json(world.deliver(synchronize(world.gov, head, base)))

    assert result["verdict"] == "valid", result
    status = _only_status(world, head)
    assert status["state"] == "success"
    assert status["description"] == (
        "valid; stricter: cooldown_minutes, require_approval_for_first_deploy"
    )


def test_a_pull_request_that_deletes_the_policy_fails(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    head, base = pull_request(world.gov, None)

    result = to_json(world.deliver(synchronize(world.gov, head, base)))

    assert result["verdict"] == "removed"
    status = _only_status(world, head)
    assert status["state"] == "failure"
    assert "once deployed, the repository is no longer governed" in status["description"]


def test_an_ungoverned_repository_gets_a_validity_check_only(world: World) -> None:
    root = sha_for(f"{world.gov.repo.full_name}:root")
    world.gov.repo.add_commit(root, files=[{"filename": "README.md", "status": "added"}])
    valid, base = pull_request(
        world.gov, "deploy_workflow: deploy.yml\nmax_deploys_per_hour: 1000\n"
    )
    broken, _ = pull_request(world.gov, "deploy_workflow: deploy.sh\n", base=base)

    first = to_json(world.deliver(synchronize(world.gov, valid, base, action="opened")))
    second = to_json(world.deliver(synchronize(world.gov, broken, base, number=8)))

    assert (first["verdict"], first["state"]) == ("valid", "success"), first
    assert "nothing to compare with" in first["description"]
    assert (second["verdict"], second["state"]) == ("invalid", "failure"), second
    assert second["description"].startswith("invalid: deploy_workflow: Value error")
    assert len(world.policy_statuses(valid)) == len(world.policy_statuses(broken)) == 1


def test_a_replayed_delivery_is_a_duplicate_and_posts_one_status(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    head, base = pull_request(world.gov, TRUSTED + "degraded: {manual: true}\n")
    payload = synchronize(world.gov, head, base)
    first = to_json(world.deliver(payload))

    again = to_json(world.deliver(payload))  # the same body under a new GUID

    assert again["result"] == "duplicate", again
    assert again["outcome"] == first
    assert world.port.calls == []
    _only_status(world, head)


def test_hostile_values_never_reach_the_status_raw(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    bad_zone = BASE_POLICY + f"freeze:\n  timezone: {json.dumps(HOSTILE)}\n"
    bad_key = BASE_POLICY + f"{json.dumps(HOSTILE)}: 1\n"
    added_pattern = TRUSTED.replace('"*.tf"]', '"*.tf", ' + json.dumps(HOSTILE) + "]")
    binary = "\x00\x01\x02\x7f\x80\xff" * 40
    heads = [pull_request(world.gov, text)[0] for text in (bad_zone, bad_key, binary)]
    relaxed, base = pull_request(world.gov, TRUSTED.replace('"infra/**", ', ""))
    with_hostile = pull_request(world.gov, added_pattern)[0]

    results = [
        to_json(world.deliver(synchronize(world.gov, head, base, number=n)))
        for n, head in enumerate([*heads, relaxed, with_hostile], start=20)
    ]

    assert [r["verdict"] for r in results] == ["invalid", "invalid", "invalid", "relaxes", "valid"]
    posted = [c["description"] for c in world.status_calls()]
    assert len(posted) == 5
    assert [r["description"] for r in results] == posted
    for text in posted:
        assert text.isascii() and text.isprintable(), text
        assert not any(c in text for c in "<>\x1b\n\u202e"), text
    assert "timezone" in posted[0] and "unknown IANA time zone" in posted[0]
    assert posted[1].startswith("invalid: ?31m?img src=x onerror=alert(1)?owned?: unknown key")
    assert posted[2].startswith("invalid: ")
    assert posted[3] == "relaxes the trusted policy once deployed: high_risk_paths"
    assert posted[4] == "valid; stricter: high_risk_paths"  # names the key, never the pattern


def test_a_pull_request_from_a_fork_is_reviewed_on_its_head(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    head, base = pull_request(
        world.gov, TRUSTED.replace("cooldown_minutes: 30", "cooldown_minutes: 0")
    )
    payload = synchronize(world.gov, head, base, action="opened")
    payload["pull_request"]["head"]["repo"] = {**payload["repository"], "id": 77, "fork": True}

    result = to_json(world.deliver(payload))

    assert result["verdict"] == "relaxes", result
    assert result["keys"] == ["cooldown_minutes"]
    assert _only_status(world, head)["state"] == "failure"


def test_a_head_github_does_not_serve_is_ignored_without_a_status(world: World) -> None:
    deployed_base(world.gov, TRUSTED)
    base = world.gov.repo.tip()
    assert base is not None
    unknown = "e" * 40
    payload = synchronize(world.gov, unknown, base)
    payload["pull_request"]["head"]["repo"] = None  # a fork since deleted

    result = world.deliver(payload)

    assert isinstance(result, Ignored) and "does not serve" in result.why, result
    # The file reads as absent at a commit GitHub does not know (a 404 like a missing
    # file), and GitHub refuses the status on it: nothing is stored, nothing raised.
    refused = [
        c
        for c in world.fake.calls_to("repos/create-commit-status")
        if f"/{world.gov.repo.full_name}/" in c.path
    ]
    assert [c.status for c in refused] == [422]
    assert world.gov.repo.statuses(unknown) == []


def test_shadow_mode_reports_a_relaxation_without_failing(
    fake_and_app: tuple[FakeGitHub, GitHubApp], tmp_path: Path
) -> None:
    world = _world(fake_and_app, tmp_path, mode=Mode.SHADOW)
    deployed_base(world.gov, TRUSTED)
    head, base = pull_request(world.gov, TRUSTED.replace("max_deploys_per_hour: 4", ""))

    result = to_json(world.deliver(synchronize(world.gov, head, base)))

    assert result["verdict"] == "relaxes"
    status = _only_status(world, head)
    assert status["state"] == "success"
    assert status["description"] == (
        "shadow, would fail: relaxes the trusted policy once deployed: max_deploys_per_hour"
    )
    assert world.fake.violations == []


# -- the plan alone ----------------------------------------------------------------------------


def test_many_relaxed_keys_fit_the_status_limit_and_say_how_many_more() -> None:
    trusted = Trusted(
        parse_policy(
            TRUSTED
            + "require_approval_for_first_deploy: true\napproval: {allow_author: false}\n"
            + "degraded: {manual: true}\nfreeze: {ranges: [{start: '2026-01-01T00:00:00Z', "
            + "end: '2026-01-02T00:00:00Z', reason: x}]}\n"
        ),
        "production " + "a" * 40,
    )
    loose = "deploy_workflow: deploy.yml\nmax_deploys_per_hour: 1000\ncooldown_minutes: 0\n"
    loose += "high_risk_paths: []\nmedium_risk_paths: []\nmode: shadow\n"
    loose += "approval: {allow_author: true, min_permission: read, mode: environment}\n"
    loose += "degraded: {issue_label: null}\n"

    review = policy_review.plan(loose, TRUSTED, trusted, Mode.ENFORCE)

    assert isinstance(review, policy_review.Review)
    assert review.state == "failure" and len(review.keys) > 8
    assert len(review.description) <= 140
    assert review.description.endswith(" more"), review.description
    shown = review.description.removeprefix("relaxes the trusted policy once deployed: ")
    more = int(shown.rsplit(" and ", 1)[1].split()[0])
    assert len(shown.rsplit(" and ", 1)[0].split(", ")) + more == len(review.keys)


def test_before_the_first_deploy_a_relaxation_applies_once_merged() -> None:
    trusted = Trusted(parse_policy(TRUSTED), "refs/heads/main")
    review = policy_review.plan(
        TRUSTED.replace("cooldown_minutes: 30", "cooldown_minutes: 5"),
        TRUSTED,
        trusted,
        Mode.ENFORCE,
    )
    assert isinstance(review, policy_review.Review)
    assert review.description == "relaxes the trusted policy once merged: cooldown_minutes"


# -- end to end over HTTP ------------------------------------------------------------------------


def test_a_signed_synchronize_delivery_over_http_posts_one_policy_status(
    fake: FakeGitHub, local_store_url: str, local_webhook: str
) -> None:
    gov = new_repo(fake, local_store_url, local_webhook)
    deployed_base(gov, TRUSTED)
    head, base = pull_request(
        gov, TRUSTED.replace("max_deploys_per_hour: 4", "max_deploys_per_hour: 9")
    )
    payload = synchronize(gov, head, base)

    answer = gov.send(payload, "pull_request")
    replay = gov.send(payload, "pull_request")

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["result"], body["verdict"], body["state"]) == (
        "policy_reviewed",
        "relaxes",
        "failure",
    )
    assert replay.status_code == 200 and replay.json()["result"] == "duplicate", replay.text
    statuses = [s for s in gov.repo.statuses(head) if s["context"] == CONTEXT]
    assert [(s["state"], s["description"]) for s in statuses] == [
        ("failure", "relaxes the trusted policy once deployed: max_deploys_per_hour")
    ]
    calls = [
        c
        for c in fake.calls_to("repos/create-commit-status")
        if f"/{gov.repo.full_name}/" in c.path
    ]
    assert len(calls) == 1 and calls[0].status == 201
    assert gov.our_statuses(head) == []  # the decision status is left alone
    assert fake.violations == []


@pytest.mark.parametrize(
    "name", ["pull_request.opened.12.json", "pull_request.synchronize.22.json"]
)
def test_github_s_own_examples_over_http_are_answered_without_a_5xx(
    fake: FakeGitHub, local_store_url: str, local_webhook: str, name: str
) -> None:
    gov = new_repo(fake, local_store_url, local_webhook)
    payload = json.loads((EXAMPLES / name).read_text())
    for body in (payload, {**payload, "installation": {"id": 999}}):
        answer = gov.send(body, "pull_request")
        assert answer.status_code < 500, answer.text
        assert answer.json()["result"] in ("ignored", "duplicate"), answer.text
    assert fake.violations == []
