"""HTML of the decision page: Jinja2, autoescaped, templates shipped in this package.

Jinja2 is imported on the first page rendered, never when the module is imported, so the
webhook function (same `main.py`) does not pay for it. No script is ever emitted; the one
inline stylesheet is allowed by its hash in the Content-Security-Policy.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import jinja2

    from governor.page.view import PageView

TEMPLATES: Final = "templates"


@functools.cache
def stylesheet() -> str:
    return resources.files(__package__).joinpath(TEMPLATES, "page.css").read_text("utf-8")


@functools.cache
def content_security_policy() -> str:
    digest = base64.b64encode(hashlib.sha256(stylesheet().encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@functools.cache
def environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader(__package__ or "governor.page", TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(view: PageView) -> bytes:
    from markupsafe import Markup

    template = environment().get_template("decision.html")
    # The stylesheet is a file of this package, not data: it goes in as it is, so that
    # its hash is the one the policy allows.
    return template.render(v=view, css=Markup(stylesheet())).encode("utf-8")  # noqa: S704
