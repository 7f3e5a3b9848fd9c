"""The `governor` command: look at and operate the governor's state.

Exit status: 0 done, 1 not found (or, for reconcile, some step failed), 2 usage or
configuration error, 75 (EX_TEMPFAIL) another governor write is in progress: retry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Final

from governor import __version__
from governor.settings import ConfigError, load_settings
from governor.store import (
    DEFAULT_WRITE_TIMEOUT_S,
    ObjectStore,
    StoreConfigError,
    StoreError,
    WriteContention,
    open_store,
)

EXIT_NOT_FOUND: Final = 1
EXIT_USAGE: Final = 2
EXIT_TEMPFAIL: Final = 75


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="governor",
        description="Release Governor: inspect and operate the deploy gate's state.",
        epilog="The store is GOVERNOR_STORE_URL unless --store is given. "
        "Exit 75 means another governor write is in progress: retry.",
    )
    parser.add_argument("--version", action="version", version=f"governor {__version__}")
    parser.add_argument(
        "--store", metavar="URL", help="file:///path, gs://bucket/prefix or s3://bucket/prefix"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    store = commands.add_parser("store", help="read raw objects in the store")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    ls = store_commands.add_parser("ls", help="list keys under a prefix")
    ls.add_argument("prefix", nargs="?", default="")
    cat = store_commands.add_parser("cat", help="print one object and its generation")
    cat.add_argument("key")

    reconcile = commands.add_parser(
        "reconcile",
        help="one reconcile run (what the scheduled function does), then a summary",
        description="Redeliver failed webhook deliveries, finish or tie up deploys, re-check "
        "holds and catch up missed verifications, then print what was done. Needs the App's "
        "settings (GOVERNOR_* variables, as the functions have them). For cron or a systemd "
        "timer every 5 minutes on self-hosted setups. Exit 1 if anything failed.",
    )
    reconcile.add_argument(
        "repo", nargs="?", help="only this repository (owner/name or id): no redelivery"
    )
    reconcile.add_argument(
        "--budget-s", type=float, metavar="SECONDS", help="time budget (default: the setting)"
    )
    return parser


def _open(args: argparse.Namespace) -> ObjectStore:
    url = args.store or os.environ.get("GOVERNOR_STORE_URL")
    if not url:
        raise StoreConfigError("no store: set GOVERNOR_STORE_URL or pass --store URL")
    timeout = float(os.environ.get("GOVERNOR_WRITE_TIMEOUT_S", DEFAULT_WRITE_TIMEOUT_S))
    return open_store(url, write_timeout_s=timeout)


def _store_command(args: argparse.Namespace) -> int:
    store = _open(args)
    if args.store_command == "ls":
        keys = store.list(args.prefix)
        print(json.dumps(keys) if args.json else "\n".join(keys))
        return 0
    current = store.get(args.key)
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
    from governor.flows import reconcile
    from governor.wiring import Governor

    settings = load_settings()
    if args.store:
        settings = settings.model_copy(update={"store_url": args.store})
    governor = Governor(settings)
    budget = reconcile.Budget(
        seconds=args.budget_s or settings.reconcile_budget_s,
        max_repos=settings.reconcile_max_repos,
        max_redeliveries=settings.reconcile_max_redeliveries,
    )
    only: int | str | None = args.repo
    if isinstance(only, str) and only.isdigit():
        only = int(only)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "reconcile":
            return _reconcile_command(args)
        return _store_command(args)
    except WriteContention as exc:
        print(f"governor: {exc}", file=sys.stderr)
        return EXIT_TEMPFAIL
    except ConfigError as exc:
        print(f"governor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, ValueError) as exc:
        print(f"governor: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
