"""`make demo`: the whole loop, offline, through real signed HTTP deliveries.

Starts the four HTTP functions on functions-framework (as `make run` serves them), a
local store in a fresh temporary directory and the GitHub sandbox (tests/support/
sandbox.py: the fake GitHub as a server, with `demo/shop` installed), then plays:

1. a LOW change: verified, dispatched, deployed;
2. a HIGH change: held, approved by a maintainer's label on its pull request, dispatched;
3. a failing deploy: a failure issue, the SHA held in cooldown, resumed by reconcile;
4. a duplicate storm: 20 deliveries of one verification at once, one dispatch.

Every webhook is POSTed by the sandbox as GitHub's Hookshot sends it (headers, HMAC
signature); everything the governor does on GitHub goes through the sandbox's REST API.
Each step is checked; the timeline says what GitHub sent, what the governor answered,
decided and did (statuses with their decision page links, dispatches, issues).

On a terminal it then keeps everything running until Ctrl-C, for `governor status` and
a browser. Without one (CI, scripts, tests) it stops everything it started and exits:
0 if every step went as described, 1 if one did not.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
from governor.ledger import Ledger, state_key
from governor.state import ReleaseState
from governor.store import open_store, update

from tests.support import sandbox as sb
from tests.support.emulators import free_port, wait_for_http
from tests.support.fake_github import Delivered, FakeGitHub, FakeRepo

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("github_webhook", "reconcile", "decision_page", "health")
CONTEXT = "release-governor"
STORM = 20
PASSED = timedelta(minutes=31)  # past demo/shop's cooldown_minutes: 30

JSON = dict[str, Any]


class StepFailed(Exception):
    """A step did not go as described."""


# -- the timeline ------------------------------------------------------------------------


@dataclass
class Timeline:
    out: TextIO
    as_json: bool = False
    started: float = field(default_factory=time.monotonic)
    failed: list[str] = field(default_factory=list)
    step: int = 0

    def _emit(self, record: JSON, text: str) -> None:
        if self.as_json:
            self.out.write(json.dumps(record, sort_keys=True) + "\n")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def say(self, text: str = "") -> None:
        self._emit({"kind": "note", "text": text}, text)

    def heading(self, title: str) -> None:
        self.step += 1
        self._emit({"kind": "step", "step": self.step, "title": title}, f"\n{self.step}. {title}")

    def event(self, actor: str, what: str, link: str | None = None) -> None:
        t = time.monotonic() - self.started
        line = f"  {f'+{t:.1f}s':>7}  {actor:<9}  {what}"
        if link:
            line += f"\n  {'':>7}  {'':<9}    details {link}"
        record = {"kind": "event", "step": self.step, "t": round(t, 2), "actor": actor}
        self._emit({**record, "what": what, "link": link}, line)

    def check(self, ok: bool, what: str) -> None:
        mark = "ok  " if ok else "FAIL"
        record = {"kind": "check", "step": self.step, "ok": ok, "what": what}
        self._emit(record, f"  [{mark}] step {self.step}: {what}")
        if not ok:
            self.failed.append(f"step {self.step}: {what}")
            raise StepFailed(what)


# -- the functions -----------------------------------------------------------------------


@dataclass
class Function:
    name: str
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def serve_functions(
    env: dict[str, str], ports: dict[str, int], logs: Path
) -> Iterator[dict[str, Function]]:
    """Each function on functions-framework, on loopback, all started at once."""
    started: dict[str, Function] = {}
    try:
        for name in FUNCTIONS:
            with (logs / f"{name}.log").open("wb") as log:
                process = subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("functions-framework")),
                        "--target",
                        name,
                        "--source",
                        str(REPO_ROOT / "functions" / "main.py"),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(ports[name]),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                    cwd=REPO_ROOT,
                    start_new_session=True,  # its own group: the gunicorn master and workers
                )
            started[name] = Function(name, f"http://127.0.0.1:{ports[name]}", process)
        for function in started.values():
            wait_for_http(function.url + "/", function.process, logs / f"{function.name}.log")
        yield started
    finally:
        for function in started.values():
            function.process.terminate()
        for function in started.values():
            try:
                function.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                function.process.kill()
                function.process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(function.process.pid, signal.SIGKILL)


# -- the loop ----------------------------------------------------------------------------


def short(sha: str) -> str:
    return sha[:7]


@dataclass
class Demo:
    fake: FakeGitHub
    repo: FakeRepo
    functions: dict[str, Function]
    store_url: str
    timeline: Timeline
    shas: list[str] = field(default_factory=list)
    verify_runs: dict[str, int] = field(default_factory=dict)

    # -- what GitHub holds ----------------------------------------------------------------

    def state(self) -> ReleaseState:
        return Ledger(open_store(self.store_url)).read_state(sb.REPO_ID, self.repo.full_name)

    def statuses(self, sha: str) -> list[JSON]:
        return [s for s in self.repo.statuses(sha) if s["context"] == CONTEXT]

    def deploy_runs(self) -> list[JSON]:
        return self.repo.dispatched_runs(sb.DEPLOY_FILE)

    def issues(self) -> list[JSON]:
        return [i for i in self.repo.issues() if "pull_request" not in i]

    def _snapshot(self) -> tuple[dict[str, int], int, dict[int, int], int]:
        statuses = {sha: len(self.statuses(sha)) for sha in self.shas}
        comments = {i["number"]: len(self.repo.comments(i["number"])) for i in self.issues()}
        refused = [
            c for c in self.fake.calls_to("actions/create-workflow-dispatch") if c.status >= 300
        ]
        return statuses, len(self.deploy_runs()), comments, len(refused)

    @contextlib.contextmanager
    def what_the_governor_did(self) -> Iterator[None]:
        """Report what reached GitHub from the governor while the block ran."""
        statuses, runs, comments, refused = self._snapshot()
        yield
        for sha in self.shas:
            for status in self.statuses(sha)[statuses.get(sha, 0) :]:
                self.timeline.event(
                    "governor",
                    f'status {status["state"]} on {short(sha)}: "{status["description"]}"',
                    status.get("target_url"),
                )
        for run in self.deploy_runs()[runs:]:
            self.timeline.event(
                "governor",
                f"dispatched {sb.DEPLOY_FILE} on {run['head_branch']} with "
                f"sha={short(run['inputs'].get('sha', ''))}: run {run['id']}",
            )
        calls = self.fake.calls_to("actions/create-workflow-dispatch")
        for call in [c for c in calls if c.status >= 300][refused:]:
            self.timeline.event("github", f"refused a dispatch: HTTP {call.status}")
        for issue in self.issues():
            number = issue["number"]
            if number not in comments:
                labels = ", ".join(label["name"] for label in issue["labels"])
                self.timeline.event(
                    "governor", f'opened issue #{number} "{issue["title"]}" [{labels}]'
                )
            elif len(self.repo.comments(number)) > comments[number]:
                self.timeline.event("governor", f"commented on issue #{number}")

    # -- what GitHub sends ----------------------------------------------------------------

    def push(self, label: str, message: str, files: list[str]) -> str:
        sha = hashlib.sha1(f"demo/shop:{label}".encode()).hexdigest()  # noqa: S324
        self.repo.add_commit(
            sha,
            files=[{"filename": f, "status": "modified"} for f in files],
            message=message,
            author=sb.AUTHOR,
        )
        self.shas.append(sha)
        self.timeline.event(
            "github", f'push {short(sha)} to main by {sb.AUTHOR}: "{message}" ({", ".join(files)})'
        )
        return sha

    def deliver(self, event: str, payload: JSON, summary: str, guid: str | None = None) -> JSON:
        """One signed delivery to github_webhook; its answer, on the timeline."""
        self.timeline.event("github", f"-> {summary}")
        with self.what_the_governor_did():
            delivered = self.fake.deliver(event, payload, guid=guid)
            self.timeline.event("governor", f"<- {delivered.status_code} {answer(delivered)}")
        body = delivered.body if isinstance(delivered.body, dict) else {}
        return {"status": delivered.status_code, **body}

    def verification_payload(self, sha: str) -> JSON:
        """Its verification run, (re-)run and completed: the `workflow_run` payload."""
        if sha in self.verify_runs:
            self.repo.rerun(self.verify_runs[sha], actor=sb.AUTHOR)
        else:
            self.verify_runs[sha] = self.repo.add_run(
                sb.VERIFY_FILE,
                event="push",
                actor=sb.AUTHOR,
                head_branch="main",
                head_sha=sha,
                display_title=f"Verify {short(sha)}",
            )
        return self.repo.complete_run(self.verify_runs[sha], "success")

    def verified(self, sha: str) -> JSON:
        payload = self.verification_payload(sha)
        attempt = payload["workflow_run"]["run_attempt"]
        again = f" (attempt {attempt})" if attempt > 1 else ""
        return self.deliver(
            "workflow_run",
            payload,
            f"workflow_run completed: Verify main{again} succeeded on {short(sha)}",
        )

    def deploy_finished(self, run_id: int, conclusion: str) -> JSON:
        payload = self.repo.complete_run(run_id, conclusion)
        sha = payload["workflow_run"]["head_sha"]
        return self.deliver(
            "workflow_run",
            payload,
            f"workflow_run completed: Deploy run {run_id} {conclusion} (main at {short(sha)})",
        )

    def run_for(self, sha: str) -> JSON | None:
        runs = [r for r in self.deploy_runs() if r["inputs"].get("sha") == sha]
        return runs[-1] if runs else None

    def check_dispatched(self, sha: str, count: int = 1) -> JSON:
        runs = [r for r in self.deploy_runs() if r["inputs"].get("sha") == sha]
        check = self.timeline.check
        check(len(runs) == count, f"{short(sha)} dispatched {count} time(s) (GitHub: {len(runs)})")
        return runs[-1]

    def check_deployed(self, sha: str, answer: JSON) -> None:
        production = self.state().production_sha
        self.timeline.check(
            answer.get("result") == "deployed" and production == sha,
            f"{short(sha)} is production (governor: {answer.get('result')}, "
            f"store: {short(production or '-')})",
        )

    # -- the steps ------------------------------------------------------------------------

    def low_change(self) -> None:
        t = self.timeline
        t.heading("A LOW change: verified -> dispatched -> deployed")
        sha = self.push("low", "Fix a typo on the checkout page", ["src/checkout/page.py"])
        decided = self.verified(sha)
        t.check(
            decided.get("decision") == "ALLOW" and decided.get("reason") == "allow_low",
            f"allowed as allow_low (answer: {decided.get('decision')} {decided.get('reason')})",
        )
        run = self.check_dispatched(sha)
        states = [s["state"] for s in self.statuses(sha)]
        t.check(states == ["success"], f"one success status on {short(sha)} ({states})")
        link = self.statuses(sha)[-1].get("target_url") or ""
        page = httpx.get(link, timeout=30) if link.startswith("http") else None
        t.check(
            page is not None and page.status_code == 200 and "GOING OUT" in page.text,
            f"its details link opens the decision page: GOING OUT ({page and page.status_code})",
        )
        self.check_deployed(sha, self.deploy_finished(run["id"], "success"))

    def high_change(self) -> None:
        t = self.timeline
        t.heading("A HIGH change: held -> approved by label -> dispatched -> deployed")
        sha = self.push(
            "high",
            "Add the orders table migration",
            ["db/migrations/0042_orders.sql", "src/orders/model.py"],
        )
        self.repo.add_pull(
            12,
            user=sb.AUTHOR,
            head_sha=hashlib.sha1(b"demo/shop:high-branch").hexdigest(),  # noqa: S324
            merge_commit_sha=sha,
            title="Orders table",
            head_ref="orders-table",
        )
        t.event("github", f'pull request #12 "Orders table" by {sb.AUTHOR} merged as {short(sha)}')
        held = self.verified(sha)
        t.check(
            held.get("decision") == "HOLD" and held.get("reason") == "high_risk_no_approval",
            f"held as high_risk_no_approval (answer: {held.get('decision')} {held.get('reason')})",
        )
        t.check(self.run_for(sha) is None, f"{short(sha)} not dispatched while held")
        latest = self.statuses(sha)[-1] if self.statuses(sha) else {}
        t.check(
            latest.get("state") == "failure" and "deploy-approved" in latest.get("description", ""),
            "its status is failure and names the label that unblocks it",
        )
        payload = self.repo.label_added_payload(12, "deploy-approved", sb.MAINTAINER)
        approved = self.deliver(
            "pull_request",
            payload,
            f"pull_request labeled: {sb.MAINTAINER} (maintain) put deploy-approved on #12",
        )
        reason = approved.get("evaluations", {}).get(sha, {}).get("reason")
        t.check(
            approved.get("result") == "approved" and reason == "allow_high_approved",
            f"approved by {sb.MAINTAINER}: {short(sha)} allow_high_approved (answer: {reason})",
        )
        run = self.check_dispatched(sha)
        self.check_deployed(sha, self.deploy_finished(run["id"], "success"))

    def failing_deploy(self) -> None:
        t = self.timeline
        t.heading("A failing deploy: failure issue -> cooldown -> resumed")
        sha = self.push("flaky", "Call the new payment provider", ["src/payments/client.py"])
        self.verified(sha)
        run = self.check_dispatched(sha)
        failed = self.deploy_finished(run["id"], "failure")
        issues = [i for i in self.issues() if i["title"] == f"Deploy failure: {short(sha)}"]
        t.check(
            failed.get("result") == "deploy_failed" and len(issues) == 1,
            f"deploy failure recorded, one failure issue ({len(issues)})",
        )
        t.event("github", f"{sb.AUTHOR} re-runs the verification of {short(sha)}")
        again = self.verified(sha)
        t.check(
            again.get("decision") == "HOLD" and again.get("reason") == "cooldown",
            f"held as cooldown (answer: {again.get('decision')} {again.get('reason')})",
        )
        latest_run = self.run_for(sha)
        t.check(
            latest_run is not None and latest_run["id"] == run["id"],
            "not dispatched again during the cooldown",
        )
        minutes = int(PASSED.total_seconds() // 60)
        self.as_if_time_passed(PASSED)
        t.event(
            "demo",
            f"pretending {minutes} minutes passed: every time in demo/shop's release state "
            f"moved {minutes} min back in the store (a conditional write), instead of waiting",
        )
        t.event("scheduler", "-> POST reconcile (Cloud Scheduler calls it every 5 minutes)")
        with self.what_the_governor_did():
            response = httpx.post(self.functions["reconcile"].url + "/", timeout=120)
            summary = response.json()
            actions = {k: v for k, v in summary.get("actions", {}).items() if v}
            t.event(
                "governor",
                f"<- {response.status_code} reconcile: "
                + (", ".join(f"{k} {v}" for k, v in sorted(actions.items())) or "nothing to do"),
            )
        t.check(
            response.status_code == 200
            and actions.get("hold_resumed") == 1
            and not summary.get("errors"),
            f"reconcile resumed the hold (errors: {summary.get('errors') or 'none'})",
        )
        resumed = self.check_dispatched(sha, count=2)
        self.check_deployed(sha, self.deploy_finished(resumed["id"], "success"))

    def duplicate_storm(self) -> None:
        t = self.timeline
        t.heading(f"A duplicate storm: {STORM} deliveries of one verification at once")
        sha = self.push("storm", "Cache product images", ["src/catalog/images.py"])
        payload = self.verification_payload(sha)
        guid = "d0d0cafe-0000-4000-8000-" + secrets.token_hex(6)
        t.event(
            "github",
            f"-> workflow_run completed: Verify main succeeded on {short(sha)}, "
            f"{STORM} times at once ({STORM // 2} redeliveries of one GUID, "
            f"{STORM - STORM // 2} with GUIDs of their own)",
        )

        def send(i: int) -> Delivered:
            return self.fake.deliver("workflow_run", payload, guid=guid if i % 2 else None)

        with self.what_the_governor_did(), ThreadPoolExecutor(max_workers=STORM) as pool:
            answers = list(pool.map(send, range(STORM)))
            tally = Counter(answer(a) for a in answers)
            t.event(
                "governor",
                "<- " + ", ".join(f"{n} x {what}" for what, n in sorted(tally.items())),
            )
        t.check(
            all(a.status_code in (200, 202, 503) for a in answers),
            "every delivery answered 200, 202 or 503 (in progress elsewhere: retry)",
        )
        decided = sum(
            1 for a in answers if isinstance(a.body, dict) and a.body.get("result") == "decided"
        )
        t.check(decided == 1, f"decided once ({decided})")
        run = self.check_dispatched(sha)
        t.check(len(self.statuses(sha)) == 1, f"one status on {short(sha)}")
        self.check_deployed(sha, self.deploy_finished(run["id"], "success"))

    # -- time ----------------------------------------------------------------------------

    def as_if_time_passed(self, passed: timedelta) -> None:
        """Move every time in the repository's release state back by `passed` (production,
        dispatches, failures, holds, approvals), through the store's conditional write, as
        tests/test_e2e_webhook.py ages leases: as if it all had happened that much earlier."""

        def age(node: Any, key: str = "") -> Any:
            if isinstance(node, dict):
                return {k: age(v, k) for k, v in node.items()}
            if isinstance(node, list):
                return [age(item) for item in node]
            if isinstance(node, str) and (key in ("at", "until") or key.endswith("_at")):
                return (datetime.fromisoformat(node) - passed).isoformat()
            return node

        def aged(old: bytes | None) -> bytes:
            if old is None:
                raise StepFailed("no release state to age")
            return json.dumps(age(json.loads(old))).encode()

        written = update(open_store(self.store_url), state_key(sb.REPO_ID), aged)
        ReleaseState.model_validate_json(written.data)  # still a state the governor reads


def answer(delivered: Delivered) -> str:
    """What the webhook answered, in a few words."""
    body = delivered.body if isinstance(delivered.body, dict) else {}
    result = str(body.get("result", delivered.status))
    if "decision" in body:
        return f"{result}: {body['decision']} {body.get('reason', '')}".strip()
    if result == "approved":
        verdicts = [f"{e.get('decision')} {e.get('reason')}" for e in body["evaluations"].values()]
        return f"approved by {body.get('by')}: " + ", ".join(verdicts)
    if result == "deployed":
        return f"deployed: production is {short(str(body.get('sha')))} (run {body.get('run_id')})"
    if result == "deploy_failed":
        return f"deploy_failed: {short(str(body.get('sha')))} (issue #{body.get('issue')})"
    if "error" in body:
        return f"{result}: {body['error']}"
    return result


# -- main --------------------------------------------------------------------------------


def _governor_cli(store_url: str, *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("governor")), "--store", store_url, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    return done.stdout.rstrip()


def _wait_for_interrupt() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


def run(out: TextIO, *, interactive: bool, as_json: bool, refuse: list[str]) -> int:
    """Play the loop; on a terminal, then wait for Ctrl-C. 0: every step went as described."""
    timeline = Timeline(out, as_json=as_json)
    store_dir = Path(tempfile.mkdtemp(prefix="governor-demo-store-"))
    logs = Path(tempfile.mkdtemp(prefix="governor-demo-logs-"))
    store_url = store_dir.as_uri()
    webhook_secret = secrets.token_hex(16)
    ports = {name: free_port() for name in FUNCTIONS}
    fake: FakeGitHub | None = None
    try:
        fake, private_key = sb.new_sandbox(
            webhook_url=f"http://127.0.0.1:{ports['github_webhook']}/",
            webhook_secret=webhook_secret,
        )
        for operation in refuse:
            fake.fail_next(operation, 422, times=1000)
        env = {
            "GOVERNOR_STORE_URL": store_url,
            "GOVERNOR_WEBHOOK_SECRET": webhook_secret,
            "GOVERNOR_GITHUB_APP_ID": sb.APP_ID,
            "GOVERNOR_GITHUB_PRIVATE_KEY": private_key,
            "GOVERNOR_GITHUB_API_URL": fake.url,
            "GOVERNOR_LINK_SECRET": secrets.token_hex(16),
            "GOVERNOR_PUBLIC_URL": f"http://127.0.0.1:{ports['decision_page']}",
        }
        timeline.say("Release Governor demo: the whole loop, offline, on a GitHub sandbox")
        timeline.say(f"  {'sandbox':<15} {fake.url}/  (a fake GitHub: REST API, signed webhooks)")
        timeline.say(f"  {'repository':<15} {sb.OWNER}/{sb.NAME}  (policy {sb.POLICY_PATH})")
        timeline.say(f"  {'store':<15} {store_url}")
        with serve_functions(env, ports, logs) as functions:
            for name, function in functions.items():
                timeline.say(f"  {name:<15} {function.url}/")
            timeline.say(
                f"\n  {'time':>7}  {'who':<9}  what   (-> sent to the governor, <- its answer)"
            )
            demo = Demo(fake, fake.repo(sb.OWNER, sb.NAME), functions, store_url, timeline)
            _play(demo)
            if not as_json:
                timeline.say("\nWhere things stand (governor status demo/shop):")
                for line in _governor_cli(store_url, "status", "demo/shop").splitlines():
                    timeline.say("  " + line)
            if fake.violations:
                timeline.failed.append(f"requests outside GitHub's API: {fake.violations}")
            if timeline.failed:
                timeline.say("\nFAILED: " + "; ".join(timeline.failed))
                timeline.say(f"The functions' logs are kept in {logs}")
            else:
                timeline.say(f"\nAll {timeline.step} steps went as described.")
            if interactive:
                _hint(timeline, store_url, functions, demo)
                _wait_for_interrupt()
    finally:
        if fake is not None:
            fake.stop()
        shutil.rmtree(store_dir, ignore_errors=True)
        if not timeline.failed:
            shutil.rmtree(logs, ignore_errors=True)
        timeline.say("Stopped the functions and the sandbox; removed the store.")
    return 1 if timeline.failed else 0


def _play(demo: Demo) -> None:
    timeline = demo.timeline
    try:
        demo.low_change()
        demo.high_change()
        demo.failing_deploy()
        demo.duplicate_storm()
    except StepFailed:
        timeline.say("\nThe remaining steps are skipped.")
    except (httpx.HTTPError, KeyError, ValueError, OSError) as exc:  # say so, still clean up
        timeline.failed.append(f"step {timeline.step}: {type(exc).__name__}: {exc}")
        timeline.say(f"\nstep {timeline.step} broke: {type(exc).__name__}: {exc}")


def _hint(timeline: Timeline, store_url: str, functions: dict[str, Function], demo: Demo) -> None:
    cli = ".venv/bin/governor --store " + store_url
    say = timeline.say
    say("\nEverything is still running. Try:")
    say(f"  {cli} status demo/shop")
    if demo.shas:
        say(f"  {cli} explain demo/shop {short(demo.shas[min(1, len(demo.shas) - 1)])}")
    say(f"  curl -X POST {functions['reconcile'].url}/      # one reconcile run")
    say(f"  curl {functions['health'].url}/           # health")
    say("  and open any 'details' link above in a browser: the decision page.")
    say("Ctrl-C stops everything.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument(
        "--refuse",
        action="append",
        default=[],
        metavar="OPERATION_ID",
        help="the sandbox answers 422 to every request of this GitHub operation "
        "(e.g. actions/create-workflow-dispatch): to see a step fail",
    )
    args = parser.parse_args(argv)
    interactive = sys.stdout.isatty()

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        return run(sys.stdout, interactive=interactive, as_json=args.json, refuse=args.refuse)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
