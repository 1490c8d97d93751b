"""The dashboard: what needs attention across the installation, at a glance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from otward.console.render import render
from otward.console.viewer import Viewer, signed_in

__all__ = ["router"]

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, viewer: Annotated[Viewer, Depends(signed_in)]) -> HTMLResponse:
    return render(request, "dashboard.html", viewer)
