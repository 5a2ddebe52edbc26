"""Pages for people: the demo at `/` and the API docs at `/docs` and `/redoc`, all served from this process.

Swagger UI and ReDoc normally load from a CDN, which leaves blank pages on a server without internet; their
files come from the fastapi-offline package instead, and the demo is plain HTML, CSS and JavaScript under
app/web/static. No page asks anything of another host."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

WEB_STATIC = Path(__file__).resolve().parent.parent.parent / "web" / "static"
DOCS_STATIC = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_ASSETS = "/static/docs"

# The browser may load only what this server serves: ReDoc's footer would fetch its maker's logo from the
# internet otherwise. Swagger UI's start-up script is inline; ReDoc's search runs in a worker made from a blob.
LOCAL_ONLY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'"
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def demo() -> FileResponse:
    return FileResponse(WEB_STATIC / "index.html", media_type="text/html", headers=LOCAL_ONLY)


def local(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(LOCAL_ONLY)
    return page


def urls(request: Request) -> tuple[str, str]:
    """The OpenAPI document's URL and the docs' assets' folder, behind whatever root path a proxy set."""
    root = request.scope.get("root_path", "")
    return f"{root}{request.app.openapi_url}", f"{root}{DOCS_ASSETS}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    openapi, assets = urls(request)
    redirect = f"{request.scope.get('root_path', '')}/docs/oauth2-redirect"
    script, style, icon = f"{assets}/swagger-ui-bundle.js", f"{assets}/swagger-ui.css", f"{assets}/favicon.png"
    title = f"{request.app.title} - Swagger UI"
    page = get_swagger_ui_html(
        openapi_url=openapi, title=title, oauth2_redirect_url=redirect, swagger_js_url=script, swagger_css_url=style,
        swagger_favicon_url=icon,
    )  # fmt: skip
    return local(page)


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    openapi, assets = urls(request)
    script, icon = f"{assets}/redoc.standalone.js", f"{assets}/favicon.png"
    title = f"{request.app.title} - ReDoc"
    page = get_redoc_html(
        openapi_url=openapi, title=title, redoc_js_url=script, redoc_favicon_url=icon, with_google_fonts=False
    )
    return local(page)


def add_pages(app: FastAPI) -> None:
    """The page routes and the static files they load. Create the app with docs_url=None and redoc_url=None,
    so that FastAPI's own CDN-backed pages do not take these paths first."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=DOCS_STATIC), name="docs-static")
    app.mount("/static/web", StaticFiles(directory=WEB_STATIC), name="web-static")
    app.include_router(router)
