"""Results as lines of text for a person. The CLI passes every line through `safe_text`,
so whatever a field holds (a path, a reason, a branch name) cannot steer the terminal."""

from __future__ import annotations

import json
from datetime import datetime

import yaml

from governor.commands.explain import Explanation
from governor.commands.operate import ApproveResult, DeclaredResult, RollbackResult
from governor.commands.policy_check import PolicyCheck, TrustedComparison
from governor.commands.replay import ReplayResult
from governor.commands.status import Freeze, Held, Lifted, Overview, RepoStatus, ShaStatus

SHORT = 12


def when(moment: datetime | None, empty: str = "-") -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else empty


def short(sha: str | None, empty: str = "none") -> str:
    return sha[:SHORT] if sha else empty


def sha_line(status: ShaStatus) -> str:
    words = {
        "production": "in production",
        "in_flight": "dispatched, deploy in flight",
        "held": "held",
        "failed": "its deploy failed",
        "previous_production": "was production before the current one",
        "decided": "decided",
        "unknown": "no record of it",
    }
    detail = words[status.state]
    if status.reason:
        outcome = f"{status.outcome} " if status.outcome and status.state == "decided" else ""
        detail += f" ({outcome}{status.reason})"
    going = "going out" if status.going_out else "not going out"
    return f"{status.sha}: {detail}; {going}"


def repo_status(result: RepoStatus) -> list[str]:
    lines = [f"{result.repo} (id {result.repo_id})"]
    if result.production_sha:
        lines.append(
            f"production: {result.production_sha} since {when(result.production_at)}"
            f" (previous: {short(result.production_previous_sha)})"
        )
    else:
        lines.append("production: none yet (no successful deploy recorded)")
    lines.extend(_freeze_line("emergency freeze", result.emergency_freeze))
    lines.extend(_lifted_line("emergency freeze", result.freeze_lifted))
    lines.extend(_freeze_line("emergency freeze of every repository", result.global_freeze))
    lines.extend(_lifted_line("emergency freeze of every repository", result.global_freeze_lifted))
    if result.degraded is not None:
        declared = result.degraded
        lines.append(
            f"production declared degraded by {declared.by} since {when(declared.since)}: "
            f"{declared.reason}"
        )
    lines.extend(
        _lifted_line("degraded declaration", result.degraded_lifted, "taken back", "declared")
    )
    lines.append("in flight:" if result.in_flight else "in flight: nothing")
    for flight in result.in_flight:
        run = (
            f"run {flight.run_id} {flight.run_url or ''}".rstrip()
            if flight.run_id is not None
            else "run not found yet (intent recorded)"
        )
        where = f" ({flight.workflow} on {flight.ref})" if flight.workflow else ""
        dispatched = when(flight.dispatched_at)
        lines.append(f"  {short(flight.sha)}  dispatched {dispatched}  {run}{where}")
    lines.append("held:" if result.held else "held: nothing")
    for held in result.held:
        lines.extend(_held(held))
    if result.failures:
        lines.append("recent deploy failures:")
        for failure in result.failures:
            issue = f", issue #{failure.issue_number}" if failure.issue_number else ""
            lines.append(
                f"  {short(failure.sha)}  {failure.conclusion} x{failure.count}, "
                f"last {when(failure.last_at)}{issue}"
            )
    if result.sha is not None:
        lines.append(sha_line(result.sha))
    return lines


def _held(held: Held) -> list[str]:
    lines = [f"  {short(held.sha)}  {held.reason} since {when(held.since)}"]
    if held.detail:
        lines.append(f"      {held.detail}")
    if held.until is None:
        clears = "not by itself"
    elif held.due:
        clears = f"{when(held.until)} (passed: the next reconcile evaluates it again)"
    else:
        clears = when(held.until)
    lines.append(f"      clears: {clears}")
    lines.append(f"      unblock: {held.unblock}")
    if held.approvals:
        lines.append(f"      approved by: {', '.join(held.approvals)}")
    lines.append(f"      see {held.docs}")
    return lines


def _freeze_line(what: str, freeze: Freeze | None) -> list[str]:
    if freeze is None:
        return []
    state = "in force" if freeze.active else "ended"
    return [
        f"{what} ({state}) by {freeze.by} since {when(freeze.since)}, "
        f"until {when(freeze.until, 'lifted by hand')}: {freeze.reason}"
    ]


def _lifted_line(
    what: str, lifted: Lifted | None, lift: str = "lifted", put: str = "set"
) -> list[str]:
    """The last `what` lifted by hand: who lifted it, when and why, then who set it and
    why (the operators' own words: the CLI passes the line through `safe_text`)."""
    if lifted is None:
        return []
    credentials = f" (store credentials {lifted.lifted_identity})" if lifted.lifted_identity else ""
    until = f" until {when(lifted.until)}" if lifted.until is not None else ""
    return [
        f"last {what} {lift} by {lifted.lifted_by}{credentials} at {when(lifted.lifted_at)}: "
        f"{lifted.lifted_reason}; it was {put} by {lifted.by} at {when(lifted.since)}{until}: "
        f"{lifted.reason}"
    ]


def overview(result: Overview) -> list[str]:
    lines = _freeze_line("emergency freeze of every repository", result.global_freeze)
    lines.extend(_lifted_line("emergency freeze of every repository", result.global_freeze_lifted))
    if not result.repositories:
        return [*lines, f"no repositories in {result.store}"]
    for line in result.repositories:
        production = (
            f"production {short(line.production_sha)} since {when(line.production_at)}"
            if line.production_sha
            else "production none"
        )
        frozen = "  FROZEN" if line.frozen else ""
        lines.append(
            f"{line.repo}  id {line.repo_id}  {production}  in flight {line.in_flight}  "
            f"held {line.held}{frozen}"
        )
    return lines


def explanation(result: Explanation) -> list[str]:
    risk = f" (risk {result.risk})" if result.risk else ""
    lines = [
        f"{result.repo} {result.sha}",
        f"decision: {result.outcome} {result.reason}{risk}: {result.detail}",
        f"rule: {result.reason}, see {result.docs}",
    ]
    if result.decided_by:
        policy = "the trusted policy" if result.decided_by == "trusted" else "the SHA's own policy"
        lines.append(f"decided by {policy} (trusted policy read at {result.trusted_policy})")
    if result.until is not None:
        lines.append(f"until: {when(result.until)}")
    if result.unblock:
        lines.append(f"unblock: {result.unblock}")
    lines.append("now: " + sha_line(result.current))
    base = f"production {short(result.production_sha)}" if result.production_sha else "its parent"
    unknown = " (file list incomplete: risk unknown)" if result.risk_unknown else ""
    lines.append(f"risk: {result.risk or '-'}, compared with {base}{unknown}")
    lines.extend(_risk_paths(result))
    lines.extend(f"note: {note}" for note in result.notes)
    if result.degraded_labels:
        lines.append(f"degraded: open issues labelled {', '.join(result.degraded_labels)}")
    if result.superseded_by:
        lines.append(f"superseded by: {result.superseded_by}")
    if result.policy_problem:
        lines.append(f"trusted policy problem: {result.policy_problem}")
    if result.own_policy_problem:
        lines.append(f"own policy problem: {result.own_policy_problem}")
    kept = len(result.evaluations)
    lines.append(f"evaluations ({kept} kept of {result.total_evaluations}, newest last):")
    for e in result.evaluations:
        until = f" until {when(e.until)}" if e.until else ""
        lines.append(
            f"  {when(e.at)}  {e.trigger:<9} {e.outcome} {e.reason} "
            f"{e.risk or '-'}{until}: {e.detail}"
        )
    if result.evaluations:
        lines.append("inputs of the latest evaluation:")
        for key, value in sorted(result.evaluations[-1].inputs.items()):
            lines.append(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    return lines


def _risk_paths(result: Explanation) -> list[str]:
    lines = []
    for path in result.paths:
        if path.pattern:
            pattern = f"  matched {path.pattern}"
        elif result.patterns_from:
            pattern = "  (no pattern of that policy classes it so)"
        else:
            pattern = "  (pattern not recorded)"
        lines.append(f"  {path.risk:<6}  {path.path}{pattern}")
    if result.paths and result.patterns_from:
        lines.append(f"  (patterns from {result.patterns_from})")
    return lines


def _comparison(against: TrustedComparison) -> list[str]:
    lines = [
        f"against {against.repo} (id {against.repo_id}), trusted policy at "
        f"{against.trusted_source}:"
    ]
    if against.trusted_problem:
        lines.append(f"  the trusted policy is unusable: {against.trusted_problem}")
        lines.append(
            "  every SHA is held policy_invalid; a valid file on the default branch "
            "becomes the trusted one"
        )
    elif not against.governed:
        lines.append(
            "  the repository is not governed (no policy, or enabled: false); this "
            "file governs it once it is the trusted policy"
        )
    if not against.differences and against.trusted_problem is None and against.governed:
        lines.append("  no differences")
    for d in against.differences:
        applies = "applies at once" if d.applies == "at_once" else "applies once trusted"
        note = f": {d.note}" if d.note else ""
        lines.append(
            f"  {d.key}: {json.dumps(d.trusted)} -> {json.dumps(d.file)}  "
            f"{d.effect.replace('_', ' ')}, {applies}{note}"
        )
    if against.relaxes:
        lines.append(
            "  RELAXES the trusted rules: the relaxation takes effect only once this "
            "file is deployed (before the first deploy: merged on the default branch)"
        )
    return lines


def policy_check(result: PolicyCheck) -> list[str]:
    if result.problem is not None:
        lines = [
            f"{result.source}: INVALID (the governor would hold every SHA policy_invalid)",
            f"  key: {result.problem.key}",
            f"  problem: {result.problem.message}",
            f"  fix: {result.problem.fix}",
        ]
    else:
        lines = [f"{result.source}: valid", "effective settings (defaults filled in):"]
        dumped = yaml.safe_dump(result.effective, sort_keys=False, default_flow_style=False)
        lines.extend("  " + line for line in dumped.splitlines())
        lines.extend(f"note: {note}" for note in result.notes)
    if result.against is not None:
        lines.extend(_comparison(result.against))
    return lines


def replayed(result: ReplayResult) -> list[str]:
    lines = [
        f"POST {result.url}  event {result.event}  delivery {result.delivery}",
        f"HTTP {result.status}{' (' + result.content_type + ')' if result.content_type else ''}",
    ]
    lines.extend(result.body.splitlines())
    return lines


def approved(result: ApproveResult) -> list[str]:
    lines = [f"{result.repo} {result.sha}: approved by {result.by} ({result.reason})"]
    if result.identity:
        lines.append(f"store credentials: {result.identity}")
    if result.result == "ignored":
        lines.append(f"not evaluated: {result.detail}")
    elif result.outcome:
        detail = f": {result.detail}" if result.detail else ""
        lines.append(f"now {result.outcome} {result.decision_reason}{detail}")
        if result.dispatch:
            lines.append(result.dispatch)
    else:
        lines.append(f"now: {result.result.replace('_', ' ')}")
    return lines


def rolled_back(result: RollbackResult) -> list[str]:
    head = f"{result.repo}: rollback from {short(result.from_sha)} to {short(result.target)}"
    lines = [f"{head} by {result.by} ({result.reason})" + (", forced" if result.forced else "")]
    if result.outcome == "ALLOW":
        if result.result == "decided":
            run = f", run {result.run_id}" if result.run_id else ""
            lines.append(f"dispatched{run}: {result.detail}")
        else:
            lines.append(
                f"another rollback to it is on its way ({result.result}), run {result.run_id}"
            )
    else:
        until = f" until {when(result.until)}" if result.until else ""
        lines.append(f"HOLD {result.decision_reason}{until}: {result.detail}")
        if result.decision_reason == "freeze_window" and not result.forced:
            lines.append("to roll back through the freeze, add --force (it is recorded)")
    return lines


def declared(result: DeclaredResult) -> list[str]:
    scope = "every repository" if result.scope == "all" else result.scope
    state = "on" if result.on else "off"
    what = "emergency freeze" if result.what == "freeze" else "degraded production"
    change = "" if result.changed else " (it was already so)"
    until = f" until {when(result.until)}" if result.until else ""
    lines = [f"{what} of {scope}: {state}{until}{change}, by {result.by} ({result.reason})"]
    if result.on and result.what == "freeze":
        lines.append(
            "every new dispatch is held; runs already dispatched go on (cancel them in GitHub)"
        )
    if not result.on and result.held:
        lines.append(
            f"{len(result.held)} held SHA(s) resume at the next reconcile (within 5 min), "
            "or now with 'governor reconcile REPO':"
        )
        lines.extend(f"  {sha}" for sha in result.held[:20])
    return lines
