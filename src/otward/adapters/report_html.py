"""The assessment report as one self-contained HTML page (Jinja2, autoescaping on).

The template ships in the package (``otward/adapters/templates/assess_report.html.j2``): inline CSS,
no script, no external resource (a Content-Security-Policy of ``default-src 'none'`` says so to the
browser too), printable. Every value from a findings document is text an endpoint may have chosen
(a server's certificate subject, a banner), so autoescaping is on and undefined names fail.
"""

from __future__ import annotations

from functools import cache

import jinja2

from otward.core.assess.report import Report

__all__ = ["render_html"]

_TEMPLATE = "assess_report.html.j2"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("otward.adapters", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


def render_html(report: Report, title: str = "otward assessment report") -> str:
    """The report as an HTML document."""
    return _environment().get_template(_TEMPLATE).render(report=report, title=title)
