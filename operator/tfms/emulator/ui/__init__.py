"""The status page `tfms up` points at: static HTML, CSS and JS under `/_emulator/ui/`.

People would rather look at a canary than read it. The page is plain files shipped in the
package (no CDN, no JS library: it must work offline on loopback) and draws everything from
the control API's JSON (`/state`, `/metrics`, `/metrics/series`, `/history`) in the browser,
so the server side is only this file server.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from ..cli_options import UI_PATH

ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "chart.js": "text/javascript",
    "style.css": "text/css",
}


def _asset(name: str) -> bytes:
    return (resources.files(__name__) / name).read_bytes()


def ui_routes() -> list[web.RouteDef]:
    """`GET /_emulator/ui/` (the page) and its assets; only the files listed in `ASSETS`."""

    async def page(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        content_type = ASSETS.get(name)
        if content_type is None:
            raise web.HTTPNotFound(text=f"no such file in the status page: {name}\n")
        return web.Response(
            body=_asset(name), content_type=content_type, charset="utf-8", headers={"Cache-Control": "no-cache"}
        )

    async def to_page(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(UI_PATH)

    return [
        web.get(UI_PATH.rstrip("/"), to_page),
        web.get(UI_PATH, page),
        web.get(UI_PATH + "{name}", page),
    ]
