"""The `governor` command: look at and operate the governor's state.

Argument parsing and dispatch only: each command's logic is in `governor.commands`, which
returns typed results rendered here as text (every line through `safe_text`) or JSON.
Exit status (docs/cli.md): 0 done; 1 error or not found (a stored record that cannot be
read too; for reconcile: some step failed, a write that could not get through included;
for replay: the answer was not 2xx); 2 usage or configuration error; 3 held / not allowed
(`status --sha`, `policy check --repo` relaxing, `approve` still held, `rollback` held);
4 invalid policy file (`policy check`); 5 rules version changed (`simulate`: a stored
evaluation decided differently under another rules version); 75 (EX_TEMPFAIL) another
governor write is in progress: retry (`approve`, `rollback`, `freeze`, `degraded`).
`--json` is accepted before the command and after it, `store ls` and `store cat` included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from governor import __version__
from governor.commands import (
    EXIT_ERROR,
    EXIT_HELD,
    EXIT_POLICY_INVALID,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    CommandError,
)
from governor.commands.safe import safe_text
from governor.github.client import GitHubError
from governor.settings import ConfigError, load_settings
from governor.store import (
    DEFAULT_WRITE_TIMEOUT_S,
    ObjectStore,
    StoreConfigError,
    StoreError,
    WriteContention,
    open_store,
    validate_key,
)

if TYPE_CHECKING:
    from governor.wiring import Governor

EXIT_NOT_FOUND: Final = EXIT_ERROR
EXIT_CODES: Final = (
    "Exit status: 0 ok; 1 error or not found; 2 usage or configuration; 3 held / not "
    "allowed; 4 invalid policy file; 5 simulate: decided differently under other rules; "
    "75 another governor write is in progress: retry. "
    "docs/cli.md has each command's exit codes and JSON fields."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="governor",
        description="Release Governor: inspect and operate the deploy gate's state.",
        epilog="The store is GOVERNOR_STORE_URL unless --store is given. "
        "Exit 75 means another governor write is in progress: retry. " + EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"governor {__version__}")
    parser.add_argument(
        "--store", metavar="URL", help="file:///path, gs://bucket/prefix or s3://bucket/prefix"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help_text, description=description, epilog=EXIT_CODES, parents=[common]
        )

    store = commands.add_parser("store", help="read raw objects in the store", parents=[common])
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    ls = store_commands.add_parser(
        "ls",
        help="list keys under a prefix",
        description="List the keys under PREFIX (every key without it). Exit 0.",
        epilog=EXIT_CODES,
        parents=[common],
    )
    ls.add_argument("prefix", nargs="?", default="")
    cat = store_commands.add_parser(
        "cat",
        help="print one object and its generation",
        description="Print the object at KEY (its generation on stderr, or in --json). "
        "Exit 1 if there is no object there or it cannot be read, 2 for a malformed KEY.",
        epilog=EXIT_CODES,
        parents=[common],
    )
    cat.add_argument("key")

    reconcile = command(
        "reconcile",
        "one reconcile run (what the scheduled function does), then a summary",
        "Redeliver failed webhook deliveries, finish or tie up deploys, re-check "
        "holds and catch up missed verifications, then print what was done. Needs the App's "
        "settings (GOVERNOR_* variables, as the functions have them). For cron or a systemd "
        "timer every 5 minutes on self-hosted setups. Exit 0 if every step went through; 1 "
        "if anything failed (a write that could not get through included: the next run "
        "does it) or REPO is unknown; 2 for a malformed REPO or missing settings.",
    )
    reconcile.add_argument(
        "repo", nargs="?", help="only this repository (owner/name or id): no redelivery"
    )
    reconcile.add_argument(
        "--budget-s", type=float, metavar="SECONDS", help="time budget (default: the setting)"
    )

    status = command(
        "status",
        "production, what is in flight and what is held (every repository without REPO)",
        "Without REPO: every repository in the store, one line each. With REPO: the SHA in "
        "production and since when, dispatches in flight with their runs, each held SHA with "
        "its reason, when it clears and what unblocks it. Reads the store only. With --sha: "
        "exit 0 if that SHA is in production or dispatched, 3 if it is not going out.",
    )
    status.add_argument("repo", nargs="?", help="owner/name or numeric id")
    status.add_argument("--sha", help="also say where this SHA (or unique prefix) stands")

    explain = command(
        "explain",
        "why a SHA was decided as it was",
        "The stored evaluations of SHA (newest last), their inputs, the paths behind the "
        "risk, the rule that decided (reason code and its section of docs/reasons.md) and "
        "what unblocks it. Reads the store only. Exit 1 if there is no record of the SHA.",
    )
    explain.add_argument("repo", help="owner/name or numeric id")
    explain.add_argument("sha", help="full SHA or a unique prefix (at least 4 hex digits)")
    explain.add_argument(
        "--policy",
        metavar="FILE",
        help="name each path's pattern from this policy file instead of the policy text "
        "the decision record keeps (the one the evaluation was classed with)",
    )

    simulate = command(
        "simulate",
        "decide a SHA again from its stored inputs (or, with --live, from GitHub now)",
        "Decide every stored evaluation of SHA again with the rules, on the inputs the "
        "record kept (both policies, the facts from GitHub, the release state it was decided "
        "on) and show whether it gives the stored outcome. Reads the store only. Exit 0: "
        "every evaluation with stored inputs reproduced; 1: a mismatch under the same rules "
        "version (a bug), or no record; 5: a mismatch where the rules version changed. "
        "--live (needs the App's GOVERNOR_* settings): gather the facts from GitHub now and "
        "show what the governor would do, without doing it (nothing written or posted).",
    )
    simulate.add_argument("repo", help="owner/name or numeric id")
    simulate.add_argument("sha", help="full SHA or a unique prefix (at least 4 hex digits)")
    simulate.add_argument(
        "--live",
        action="store_true",
        help="fresh facts from GitHub through the App: what would happen now",
    )

    policy = commands.add_parser("policy", help="policy files", parents=[common])
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_commands.add_parser(
        "check",
        help="validate a policy file and show what it means",
        description="Validate a policy file as the governor reads it and print the effective "
        "settings (defaults filled in), or the problem with the key named and how to fix it "
        "(exit 4). With --repo (needs the App's GOVERNOR_* settings): the keys that differ "
        "from the repository's trusted policy, read through the App, and whether the change "
        "relaxes the rules (exit 3): a relaxation takes effect only once the file is deployed.",
        epilog=EXIT_CODES,
        parents=[common],
    )
    check.add_argument(
        "file", nargs="?", default=".github/release-governor.yml", help="'-' for stdin"
    )
    check.add_argument("--repo", help="compare with this repository's trusted policy")

    replay = command(
        "replay",
        "sign a webhook payload with the webhook secret and POST it",
        "Sign FILE ('-' for stdin) with GOVERNOR_WEBHOOK_SECRET as GitHub does "
        "(X-Hub-Signature-256) and POST it with GitHub's headers; print the answer. "
        "Exit 0 on a 2xx answer, 1 otherwise.",
    )
    replay.add_argument("file", help="the JSON payload; '-' for stdin")
    replay.add_argument("--event", required=True, help="X-GitHub-Event, e.g. ping, workflow_run")
    replay.add_argument("--url", required=True, help="the webhook function's URL")
    replay.add_argument("--delivery", metavar="GUID", help="X-GitHub-Delivery (default: new)")
    replay.add_argument("--timeout-s", type=float, default=30.0, metavar="SECONDS")
    _operator_commands(command)
    return parser


def _operator_commands(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """approve, rollback, freeze, degraded: the commands that write (docs/operations.md)."""

    def who(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--reason", required=True, help="why (recorded)")
        parser.add_argument("--by", help="who, recorded (default: the local user)")

    approve = command(
        "approve",
        "approve a SHA as an operator, then evaluate it again",
        "Record an operator approval of SHA (with --by, --reason and the identity of the "
        "store's credentials where the backend can tell), then evaluate the SHA again and "
        "dispatch it if the gate now allows it. Needs the App's GOVERNOR_* settings. Exit 0 "
        "if the SHA is now allowed, dispatched or in production (a SHA in production is not "
        "approved: nothing is recorded or posted); 3 if it is still held (the reason is "
        "printed); 1 if it was not evaluated (not on the default branch, not governed).",
    )
    approve.add_argument("repo", help="owner/name or numeric id")
    approve.add_argument("sha", help="full SHA, or a unique prefix the store knows")
    who(approve)

    rollback = command(
        "rollback",
        "dispatch the previous production SHA (or --to SHA) through the gate",
        "Dispatch the deploy workflow for the SHA in production before the current one, or "
        "for --to SHA, which must have been in production. Risk, approvals, cooldown and "
        "the rate limit do not apply; a freeze (policy window or emergency) holds it unless "
        "--force, which is recorded. Needs the App's GOVERNOR_* settings. Exit 0 dispatched "
        "(or another operator's rollback to the same SHA is on its way); 3 held or not "
        "allowed (the reason is printed); 1 GitHub refused the dispatch.",
    )
    rollback.add_argument("repo", help="owner/name or numeric id")
    rollback.add_argument("--to", metavar="SHA", help="a SHA that was in production")
    rollback.add_argument("--force", action="store_true", help="go through a freeze (recorded)")
    who(rollback)

    freeze = command(
        "freeze",
        "emergency freeze of one repository or of every one (--all)",
        "on: hold every new dispatch at once (reason freeze_window, with your reason), until "
        "'off' or until --until passes. The freeze of every repository (--all) is one record, "
        "read with every evaluation and again right before every dispatch. Runs already "
        "dispatched go on: cancel them in GitHub. Reads and writes the store only. Exit 0.",
    )
    freeze.add_argument("target", metavar="REPO", nargs="?", help="owner/name or id (or --all)")
    freeze.add_argument("--all", action="store_true", help="every repository")
    freeze.add_argument("switch", choices=("on", "off"))
    freeze.add_argument(
        "--until", metavar="TIME", help="when it lifts itself: 4h, 2d or 2026-12-01T18:00Z"
    )
    who(freeze)

    degraded = command(
        "degraded",
        "declare production degraded by hand (or take it back)",
        "on: production counts as degraded, as if its incident issue were open: HIGH-risk "
        "SHAs are held (degraded_high_risk), and MEDIUM ones too (degraded_medium_hold). "
        "off: held SHAs resume at the next reconcile. Reads and writes the store only. Exit 0.",
    )
    degraded.add_argument("repo", help="owner/name or numeric id")
    degraded.add_argument("switch", choices=("on", "off"))
    who(degraded)


def _open(args: argparse.Namespace) -> ObjectStore:
    url = args.store or os.environ.get("GOVERNOR_STORE_URL")
    if not url:
        raise StoreConfigError("no store: set GOVERNOR_STORE_URL or pass --store URL")
    return open_store(url, write_timeout_s=_write_timeout())


def _write_timeout() -> float:
    text = os.environ.get("GOVERNOR_WRITE_TIMEOUT_S")
    if text is None:
        return DEFAULT_WRITE_TIMEOUT_S
    try:
        timeout = float(text)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 600:
        raise StoreConfigError(
            f"GOVERNOR_WRITE_TIMEOUT_S='{text}' is not a number of seconds over 0, up to 600"
        )
    return timeout


def _read(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_ERROR) from None


def _emit(args: argparse.Namespace, result: Any, text: Callable[[Any], list[str]]) -> None:
    from governor.commands.jsonify import to_json

    if args.json:
        print(json.dumps(to_json(result), sort_keys=True))
    else:
        print("\n".join(safe_text(line) for line in text(result)))


def _store_command(args: argparse.Namespace) -> int:
    from governor.commands import repos

    store = _open(args)
    if args.store_command == "ls":
        keys = store.list(args.prefix)
        print(json.dumps(keys) if args.json else "\n".join(keys))
        return 0
    try:
        validate_key(args.key)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        current = store.get(args.key)
    except ValueError as exc:  # not a governor object: its header is missing
        raise repos.unreadable(store, args.key, exc) from None
    if current is None:
        print(f"governor: no object at '{args.key}' in {store.url}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.json:
        text = current.data.decode("utf-8", errors="replace")
        print(json.dumps({"key": args.key, "generation": current.generation, "data": text}))
    else:
        print(f"# generation {current.generation}", file=sys.stderr)
        sys.stdout.buffer.write(current.data)
    return 0


def _reconcile_command(args: argparse.Namespace) -> int:
    from governor.commands import repos
    from governor.flows import reconcile

    if args.repo is not None:
        repos.parse_repo(args.repo)  # a malformed REPO is a usage error before anything runs
    governor = _governor(args)
    settings = governor.settings
    budget = reconcile.Budget(
        seconds=args.budget_s or settings.reconcile_budget_s,
        max_repos=settings.reconcile_max_repos,
        max_redeliveries=settings.reconcile_max_redeliveries,
    )
    # REPO as every command takes it: owner/name (any case; the name the store last saw
    # too) or the id; unknown to the App is the error `approve` gives.
    only = repos.locate(governor, args.repo)[0].id if args.repo is not None else None
    summary = reconcile.run(governor.context, governor.app, budget, only_repo=only).to_json()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        done = ", ".join(f"{k} {v}" for k, v in summary["actions"].items() if v) or "nothing to do"
        print(
            f"reconciled {summary['visited']} of {summary['repositories']} repositories: {done}"
            + (
                " (stopped at the time budget; the next run resumes)"
                if summary["stopped_early"]
                else ""
            )
        )
        for error in summary["errors"]:
            print(f"governor: {error}", file=sys.stderr)
    return EXIT_NOT_FOUND if summary["errors"] else 0


def _status_command(args: argparse.Namespace) -> int:
    from governor.commands import render, repos, status

    store, now = _open(args), datetime.now(UTC)
    if args.repo is None:
        if args.sha:
            raise CommandError("--sha needs REPO", EXIT_USAGE)
        _emit(args, status.overview(store, now), render.overview)
        return 0
    state = repos.resolve_state(store, args.repo)
    sha = repos.resolve_sha(store, state, args.sha) if args.sha else None
    result = status.repo_status(store, state, now, sha)
    _emit(args, result, render.repo_status)
    return EXIT_HELD if result.sha is not None and not result.sha.going_out else 0


def _explain_command(args: argparse.Namespace) -> int:
    from governor.commands import explain, render, repos

    store = _open(args)
    state = repos.resolve_state(store, args.repo)
    sha = repos.resolve_sha(store, state, args.sha)
    policy = None
    if args.policy:
        text = _read(args.policy).decode("utf-8", errors="replace")
        policy = explain.load_patterns(text, args.policy)
    result = explain.explain(store, state, sha, policy=policy, policy_source=args.policy)
    _emit(args, result, render.explanation)
    return 0


def _simulate_command(args: argparse.Namespace) -> int:
    from governor.commands import repos, simulate

    if args.live:
        from governor.wiring import Governor

        settings = load_settings()
        if args.store:
            settings = settings.model_copy(update={"store_url": args.store})
        now = simulate.live(Governor(settings), args.repo, args.sha)
        _emit(args, now, simulate.render_live)
        return 0
    store = _open(args)
    state = repos.resolve_state(store, args.repo)
    sha = repos.resolve_sha(store, state, args.sha)
    result = simulate.simulate(store, state, sha)
    _emit(args, result, simulate.render_simulation)
    return result.exit_code


def _policy_command(args: argparse.Namespace) -> int:
    from governor.commands import policy_check, render

    source = "(stdin)" if args.file == "-" else args.file
    text = _read(args.file).decode("utf-8", errors="replace")
    result = policy_check.check_text(text, source)
    if args.repo:
        from governor.wiring import Governor

        settings = load_settings()
        if args.store:
            settings = settings.model_copy(update={"store_url": args.store})
        result = policy_check.check_against(Governor(settings), result, text, args.repo)
    _emit(args, result, render.policy_check)
    if not result.valid:
        return EXIT_POLICY_INVALID
    return EXIT_HELD if result.against is not None and result.against.relaxes else 0


def _replay_command(args: argparse.Namespace) -> int:
    from governor.commands import render, replay

    result = replay.replay(
        _read(args.file),
        event=args.event,
        url=args.url,
        secret=os.environ.get(replay.SECRET_VARIABLE),
        delivery=args.delivery,
        timeout_s=args.timeout_s,
    )
    _emit(args, result, render.replayed)
    return 0 if result.ok else EXIT_ERROR


def _governor(args: argparse.Namespace) -> Governor:
    from governor.wiring import Governor

    settings = load_settings()
    if args.store:
        settings = settings.model_copy(update={"store_url": args.store})
    return Governor(settings)


def _approve_command(args: argparse.Namespace) -> int:
    from governor.commands import operate, render

    def text(result: operate.ApproveResult) -> list[str]:
        if result.result == "in_production":  # nothing was approved: say so, not "approved"
            return [f"{result.repo} {result.sha}: {result.detail}; no approval recorded"]
        return render.approved(result)

    result = operate.approve(_governor(args), args.repo, args.sha, by=args.by, why=args.reason)
    _emit(args, result, text)
    return result.exit_code


def _rollback_command(args: argparse.Namespace) -> int:
    from governor.commands import operate, render

    result = operate.rollback(
        _governor(args), args.repo, to=args.to, by=args.by, why=args.reason, force=args.force
    )
    _emit(args, result, render.rolled_back)
    return result.exit_code


def _freeze_command(args: argparse.Namespace) -> int:
    from governor.commands import operate, render

    if args.all == (args.target is not None):
        raise CommandError("give REPO or --all (not both)", EXIT_USAGE)
    result = operate.freeze(
        _open(args),
        args.target,
        on=args.switch == "on",
        by=args.by,
        why=args.reason,
        until=args.until,
        now=datetime.now(UTC),
    )
    _emit(args, result, render.declared)
    return 0


def _degraded_command(args: argparse.Namespace) -> int:
    from governor.commands import operate, render

    result = operate.degraded(
        _open(args),
        args.repo,
        on=args.switch == "on",
        by=args.by,
        why=args.reason,
        now=datetime.now(UTC),
    )
    _emit(args, result, render.declared)
    return 0


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "approve": _approve_command,
    "rollback": _rollback_command,
    "freeze": _freeze_command,
    "degraded": _degraded_command,
    "store": _store_command,
    "reconcile": _reconcile_command,
    "status": _status_command,
    "explain": _explain_command,
    "simulate": _simulate_command,
    "policy": _policy_command,
    "replay": _replay_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (CommandError, StoreError, ConfigError, GitHubError, ValueError) as exc:
        message, code = _failure(exc)
        print(f"governor: {safe_text(message)}", file=sys.stderr)
        return code


def _failure(exc: Exception) -> tuple[str, int]:
    """What to say and the exit status: 2 only for usage and configuration."""
    if isinstance(exc, CommandError):
        return str(exc), exc.exit_code
    if isinstance(exc, WriteContention):
        return str(exc), EXIT_TEMPFAIL
    if isinstance(exc, (ConfigError, StoreConfigError)):
        return str(exc), EXIT_USAGE
    if isinstance(exc, GitHubError):
        return f"GitHub: {exc}", EXIT_ERROR
    if isinstance(exc, ValidationError):  # a record read outside `commands.repos`, which names it
        from governor.commands import repos

        return (
            f"a stored record cannot be read ({repos.problem(exc)}): 'governor store ls' "
            "lists the records and 'governor store cat KEY' shows one; put back a good "
            "copy of the broken one"
        ), EXIT_ERROR
    return str(exc), EXIT_ERROR  # any other store error or bad value: not a usage error


if __name__ == "__main__":
    sys.exit(main())
