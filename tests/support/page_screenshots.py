"""Screenshots of the decision page for docs/ (`make screenshots`): a HOLD and an ALLOW page,
made the way the tests make them (the webhook deciding SHAs on the fake GitHub), taken in
headless Chromium at a phone's and a laptop's width.

    python -m tests.support.page_screenshots docs/img
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.support.browser import chromium
from tests.support.decision_pages import decide, page_site
from tests.support.e2e import APP_ID
from tests.support.fake_github import FakeGitHub
from tests.support.keys import rsa_key_pair

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1024, "height": 768}}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    _private, public = rsa_key_pair()
    with (
        FakeGitHub(app_id=APP_ID, public_key_pem=public) as fake,
        tempfile.TemporaryDirectory(prefix="screenshots-store-") as store,
        page_site(fake, Path(store).as_uri()) as site,
    ):
        decided = decide(site)
        pages = {"held": decided.held_link, "allowed": decided.approved_link}
        for size, viewport in SIZES.items():
            with chromium(viewport=viewport) as context:
                tab = context.new_page()
                for name, url in pages.items():
                    tab.goto(url, wait_until="load")
                    target = out / f"decision-page-{name}-{size}.png"
                    tab.screenshot(path=str(target), full_page=True)
                    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
