"""Pages from the packaged Jinja2 templates, with what every page needs (the viewer, its CSRF
token, the navigation its roles allow) and the headers every console answer carries."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from otward import __version__
from otward.console.viewer import Viewer
from otward.core.authz import Action, Area

__all__ = ["PREFIX", "SECURITY_HEADERS", "NavItem", "navigation", "render", "templates", "wants_block"]

PREFIX = "/ui"

# The console's own scripts and styles only: no inline script, no eval (htmx is told not to), no
# frames, forms only to itself. Every answer is private and never cached.
SECURITY_HEADERS: Mapping[str, str] = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    # same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" with a form's
    # POST, and the same-origin check of every change would refuse the console's own forms.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), clipboard-write=(self)",
}


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    areas: tuple[Area, ...]  # shown to an account reading any of them; () to every account
    also: tuple[str, ...] = ()  # other paths that belong to this menu entry

    def is_current(self, path: str) -> bool:
        """True when ``path`` (under the console's prefix) is this entry's page or one of its pages."""
        local = path.removeprefix(PREFIX) or "/"
        if self.path == "/":
            return local == "/"
        return any(local == p or local.startswith(p + "/") for p in (self.path, *self.also))


_NAVIGATION = (
    NavItem("Dashboard", "/", ()),
    NavItem("Authorities", "/authorities", (Area.PKI,)),
    NavItem("Certificates", "/certificates", (Area.PKI,)),
    NavItem("Devices", "/devices", (Area.ENROLLMENT,), also=("/owners", "/enrollment-tokens")),
    NavItem("Access", "/access", (Area.ACCESS,)),
    NavItem("Audit", "/audit", (Area.AUDIT,)),
    NavItem("Approvals", "/approvals", (Area.PKI, Area.ADMIN)),  # as /api/v1/approvals
)


def navigation(viewer: Viewer) -> list[NavItem]:
    """The pages this viewer's roles let it read, in menu order."""
    return [
        item
        for item in _NAVIGATION
        if not item.areas or any(viewer.may_some(area, Action.READ) for area in item.areas)
    ]


def _utc(value: datetime | None, seconds: bool = False) -> str:
    if value is None:
        return "—"
    fmt = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return value.astimezone(UTC).strftime(fmt)


@functools.cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("otward.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _utc
    env.globals["prefix"] = PREFIX
    env.globals["version"] = __version__
    env.globals["Area"] = Area
    env.globals["Action"] = Action
    return env


def render(
    request: Request,
    template: str,
    viewer: Viewer | None,
    *,
    status_code: int = 200,
    block: str | None = None,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """``template`` as an answer; with ``block``, only that block (an htmx swap of part of a page)."""
    page = templates().get_template(template)
    values = {
        "request": request,
        "viewer": viewer,
        "csrf": viewer.csrf if viewer else "",
        "nav": navigation(viewer) if viewer else [],
        "path": request.url.path,
        **context,
    }
    if block is not None:
        html = "".join(page.blocks[block](page.new_context(values)))
    else:
        html = page.render(values)
    return HTMLResponse(html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})})


def wants_block(request: Request, target: str) -> bool:
    """True when htmx asked for only the element ``target`` of the page."""
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-target") == target
