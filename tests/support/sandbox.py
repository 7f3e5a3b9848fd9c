"""The GitHub sandbox: the fake GitHub run as a server, with one governed repository.

`make run` (without App credentials) and `make demo` serve the functions against it
instead of api.github.com: no GitHub account, nothing leaves 127.0.0.1. It is the same
`FakeGitHub` the tests use (GitHub's REST API, checked against GitHub's OpenAPI
description, with App JWT and installation-token authentication), on a chosen port, with
`demo/shop` installed: a policy file on `main` and the `verify-main.yml` and `deploy.yml`
workflows.

    python -m tests.support.sandbox --port 8084 --private-key-out /tmp/k/app.pem

generates the App's key pair (never stored in the repository), writes the private key
where the governor reads it, prints `sandbox <url>` and serves until interrupted. The
App id is printed too; the webhook secret, if `GOVERNOR_WEBHOOK_SECRET` is set, signs
the deliveries it sends (a redelivery asked for by reconcile) to `--webhook-url`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from tests.support.fake_github import FakeGitHub, FakeRepo, _Handler, _Server
from tests.support.keys import rsa_key_pair

APP_ID = "31337"
APP_SLUG = "release-governor"
INSTALLATION_ID = 42
OWNER, NAME = "demo", "shop"
REPO_ID = 4242
VERIFY_FILE = "verify-main.yml"
DEPLOY_FILE = "deploy.yml"
POLICY_PATH = ".github/release-governor.yml"
POLICY = f"""\
# demo/shop's release policy (docs/policy.md)
deploy_workflow: {DEPLOY_FILE}
verification_workflow: {VERIFY_FILE}
cooldown_minutes: 30        # a SHA whose deploy failed waits 30 minutes before a retry
max_deploys_per_hour: 20
approval:
  mode: label
  label: deploy-approved    # put on the pull request by someone with maintain or more
"""
MAINTAINER = "mona"
AUTHOR = "octocat"


class _PortServer(_Server):
    def __init__(self, fake: FakeGitHub, port: int) -> None:
        self.fake = fake
        super(_Server, self).__init__(("127.0.0.1", port), _Handler)


class Sandbox(FakeGitHub):
    """FakeGitHub on 127.0.0.1:`port` (0: any free port), set before `start`."""

    port: int = 0

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        self._server = _PortServer(self, self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="github-sandbox",
            daemon=True,
        )
        self._thread.start()


def seed(fake: FakeGitHub) -> FakeRepo:
    """`demo/shop`, installed, governed: its first commit on main holds the policy."""
    repo = fake.add_repo(OWNER, NAME, repo_id=REPO_ID, installation_id=INSTALLATION_ID)
    repo.add_workflow(VERIFY_FILE, name="Verify main", workflow_id=REPO_ID * 10 + 1)
    repo.add_workflow(
        DEPLOY_FILE,
        name="Deploy",
        workflow_id=REPO_ID * 10 + 2,
        run_name_template="Deploy {sha}",
        inputs={"sha": True},
    )
    first = "5a4d3c2b1a" * 4
    repo.add_commit(
        first,
        files=[
            {"filename": POLICY_PATH, "status": "added"},
            {"filename": "README.md", "status": "added"},
        ],
        message="Govern releases with Release Governor",
        author=AUTHOR,
    )
    repo.set_file(POLICY_PATH, POLICY, ref=first)
    repo.set_file(POLICY_PATH, POLICY, ref="main")
    repo.set_permission(MAINTAINER, "maintain")
    repo.set_permission(AUTHOR, "write")
    return repo


def new_sandbox(
    *,
    port: int = 0,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> tuple[Sandbox, str]:
    """A started, seeded sandbox and the App's private key (PEM), generated now."""
    private, public = rsa_key_pair("sandbox")
    sandbox = Sandbox(
        app_id=APP_ID,
        public_key_pem=public,
        app_slug=APP_SLUG,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )
    sandbox.port = port
    seed(sandbox)
    sandbox.start()
    return sandbox, private


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.sandbox", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument(
        "--private-key-out",
        type=Path,
        required=True,
        help="where to write the App's private key (PEM, mode 0600), for the governor",
    )
    parser.add_argument("--webhook-url", help="where deliveries (redeliveries) are sent")
    args = parser.parse_args(argv)

    sandbox, private = new_sandbox(
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=os.environ.get("GOVERNOR_WEBHOOK_SECRET") or None,
    )
    fd = os.open(args.private_key_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as key_file:
        key_file.write(private)
    print(f"sandbox {sandbox.url} app_id={APP_ID} repository={OWNER}/{NAME}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        args.private_key_out.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
