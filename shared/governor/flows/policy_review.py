"""A pull request that changes `.github/release-governor.yml`: what the file at its head
means, posted as a commit status of its own (`<status context>/policy`), so a broken or
relaxing policy shows before it merges.

    gather  the state (production's SHA); one wave: the file at the head and at the base,
            and the trusted policy's two candidates (production's, the default branch's)
    plan    unchanged: nothing to say; else a review: invalid, removed, relaxing the
            trusted policy (which keys), or valid (stricter, or only neutral changes)
    act     one status on the head SHA

The review compares the file with the trusted policy (`choose_trusted`), not with the
base branch: what the governor would enforce once this file is the trusted policy. It
is advice: the governor itself still decides each SHA under both policies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from governor.events import PullRequestChanged
from governor.flows.context import Context, Repo, Trusted, choose_trusted, mode_of, wave
from governor.flows.results import Ignored, PolicyReviewed, PolicyVerdict
from governor.github.client import NotFound, Unprocessable
from governor.messages import STATUS_LIMIT
from governor.policy import POLICY_PATH, Mode, Policy, PolicyProblem, parse_policy
from governor.policy_diff import RELAXING, differences

StatusState = Literal["success", "failure"]
CONTEXT_SUFFIX: Final = "/policy"
"""The review's status context is the governor's own plus this: a separate check that a
repository can make required (or not) in its branch protection."""
UNCHANGED: Final = "the pull request does not change the policy file"
_NOT_SERVED: Final = "GitHub does not serve the pull request's head commit {sha}: nothing to review"
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9 _.,:;'()/*!#=+@-]+")
"""Everything but plain printable ASCII without markup: what a policy file says (an
unknown key's name, a value quoted in a problem) reaches the status only through this."""


class Review(msgspec.Struct, frozen=True):
    """What to post: the verdict, the status state and its description."""

    verdict: PolicyVerdict
    state: StatusState
    description: str
    keys: tuple[str, ...] = ()


# -- gather --------------------------------------------------------------------------------


class _Files(msgspec.Struct, frozen=True):
    head: str | None
    base: str | None
    trusted: Trusted


class _HeadUnreadable(Exception):
    """GitHub refused to read the file at the head commit (422): a commit it does not serve."""


def _gather(ctx: Context, repo: Repo, event: PullRequestChanged) -> _Files:
    production_sha = ctx.ledger.read_state(repo.id, repo.full_name).production_sha
    pull = event.pull_request
    with wave() as w:
        head = w.read(repo.api.file_text, POLICY_PATH, pull.head.sha)
        base = w.read(repo.api.file_text, POLICY_PATH, pull.base.sha)
        on_default = w.read(repo.api.file_text, POLICY_PATH, repo.default_ref)
        at_production = (
            w.read(repo.api.file_text, POLICY_PATH, production_sha) if production_sha else None
        )
    try:
        head_text = head.result()
    except Unprocessable:
        raise _HeadUnreadable from None
    try:
        base_text = base.result()
    except Unprocessable:  # reviewed as if the pull request added the file
        base_text = None
    trusted = choose_trusted(
        repo,
        production_sha,
        at_production.result() if at_production else None,
        on_default.result(),
    )
    return _Files(head_text, base_text, trusted)


# -- plan ------------------------------------------------------------------------------------


def plan(head: str | None, base: str | None, trusted: Trusted, mode: Mode) -> Review | Ignored:
    """The review of the file at the head: pure. `mode` is the trusted policy's (shadow
    reports a failure as `success`, like every status of a governor being tried out)."""
    if head == base:
        return Ignored(UNCHANGED)
    review = _review(parse_policy(head), trusted)
    if mode is Mode.SHADOW and review.state == "failure":
        return Review(
            review.verdict,
            "success",
            _fit(f"shadow, would fail: {review.description}"),
            review.keys,
        )
    return review


def _governed(trusted: Trusted) -> bool:
    """A trusted policy decides something: it governs, or it is invalid and holds all."""
    policy = trusted.policy
    return isinstance(policy, PolicyProblem) or (isinstance(policy, Policy) and policy.enabled)


def _review(file: Policy | PolicyProblem | None, trusted: Trusted) -> Review:
    # The file becomes the trusted policy once deployed; before the first deploy, the
    # default branch's is the trusted one, so once merged.
    once = "once deployed" if trusted.source.startswith("production") else "once merged"
    if file is None:
        if _governed(trusted):
            return Review(
                PolicyVerdict.REMOVED,
                "failure",
                f"removes the policy file: {once}, the repository is no longer governed",
            )
        return Review(
            PolicyVerdict.REMOVED, "success", "removes the policy file; nothing governs now either"
        )
    if isinstance(file, PolicyProblem):
        key = _plain(file.key, 40)
        return Review(
            PolicyVerdict.INVALID, "failure", _fit(f"invalid: {key}: {_plain(file.message, 100)}")
        )
    if isinstance(trusted.policy, PolicyProblem):
        return Review(
            PolicyVerdict.VALID,
            "success",
            "valid; the trusted policy is invalid (every SHA is held), so nothing to compare with",
        )
    if not _governed(trusted) or not isinstance(trusted.policy, Policy):
        return Review(
            PolicyVerdict.VALID,
            "success",
            "valid; no trusted policy governs the repository now, so nothing to compare with",
        )
    return _compared(trusted.policy, file, once)


def _compared(trusted: Policy, file: Policy, once: str) -> Review:
    """A valid file against a governing trusted policy: relaxing keys fail the review."""
    found = differences(trusted, file)
    relaxed = tuple(d.key for d in found if d.effect in RELAXING)
    if relaxed:
        return Review(
            PolicyVerdict.RELAXES,
            "failure",
            _with_keys(f"relaxes the trusted policy {once}: ", relaxed),
            relaxed,
        )
    stricter = tuple(d.key for d in found if d.effect == "stricter")
    neutral = tuple(d.key for d in found if d.effect == "neutral")
    if stricter:
        text = _with_keys("valid; stricter: ", stricter)
    elif neutral:
        text = _with_keys("valid; no rule relaxed or tightened; changes: ", neutral)
    else:
        text = "valid; the same rules as the trusted policy"
    return Review(PolicyVerdict.VALID, "success", text, stricter + neutral)


def _with_keys(prefix: str, keys: Sequence[str]) -> str:
    """`prefix` and as many keys as fit the status, then how many more."""
    shown: list[str] = []
    for i, key in enumerate(keys):
        rest = len(keys) - i - 1
        more = f" and {rest} more" if rest else ""
        if len(prefix + ", ".join([*shown, key]) + more) > STATUS_LIMIT:
            return prefix + ", ".join(shown) + f" and {len(keys) - len(shown)} more"
        shown.append(key)
    return prefix + ", ".join(shown)


def _plain(text: str, limit: int) -> str:
    """`text` as plain ASCII on one line: anything else (control characters, ANSI escapes,
    markup, newlines, non-ASCII) becomes '?', and it is cut to `limit` characters."""
    flat = " ".join(_UNSAFE.sub("?", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _fit(text: str) -> str:
    return text if len(text) <= STATUS_LIMIT else text[: STATUS_LIMIT - 3] + "..."


# -- act ---------------------------------------------------------------------------------------


def on_pull_request(
    ctx: Context, repo: Repo, event: PullRequestChanged
) -> PolicyReviewed | Ignored:
    pull = event.pull_request
    try:
        files = _gather(ctx, repo, event)
    except _HeadUnreadable:
        return Ignored(_NOT_SERVED.format(sha=pull.head.sha))
    review = plan(files.head, files.base, files.trusted, mode_of(ctx, files.trusted.policy))
    if isinstance(review, Ignored):
        return review
    try:
        repo.api.create_status(
            pull.head.sha,
            state=review.state,
            context=ctx.settings.status_context + CONTEXT_SUFFIX,
            description=review.description,
            target_url=None,
        )
    except (NotFound, Unprocessable):
        # GitHub knows no such commit here: then the file was not read at it either (a
        # commit GitHub does not serve reads as no file), so there is no review to give.
        return Ignored(_NOT_SERVED.format(sha=pull.head.sha))
    return PolicyReviewed(
        sha=pull.head.sha,
        pull=pull.number,
        verdict=review.verdict,
        state=review.state,
        description=review.description,
        keys=review.keys,
    )
