"""GET /: the live dashboard, a static page served by the app itself (no CDN, works offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).parent.parent / "static"

router = APIRouter(tags=["dashboard"])


@router.get(
    "/",
    summary="The live dashboard (HTML; its scripts and styles are under /static)",
    response_class=FileResponse,
    responses={200: {"content": {"text/html": {}}, "description": "The dashboard page"}},
)
async def dashboard() -> FileResponse:
    """Serve the page; it asks for a token itself unless auth is off."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
