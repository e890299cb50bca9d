"""The REST API as a plain function of (method, raw path, body) -> response.

Kept free of any HTTP framework so the same dispatch runs in the aiohttp server, in
tests, and in benchmarks; it is TF Serving's `HttpRestApiHandler::ProcessRequest`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tfms.runtime import metrics as metrics_mod
from tfms.runtime.errors import Code, ServingError, http_status, invalid
from tfms.runtime.models import ModelManager, error_body
from tfms.runtime.urls import is_api_path, parse_route

log = logging.getLogger("tfms.runtime")

JSON = "application/json"
# libevent's reply for a URI no handler claimed (TF Serving has no /healthz etc.).
NOT_FOUND_HTML = (
    b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
)
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


class RestApi:
    """Dispatches API paths to a ModelManager."""

    def __init__(self, manager: ModelManager, cors: bool = False, metrics_path: str = "") -> None:
        self.manager = manager
        self.cors = cors
        self.metrics_path = metrics_path  # Prometheus endpoint, "" when monitoring is off
        self.metrics = manager.metrics

    def handle(self, method: str, raw_path: str, body: bytes, origin: str | None = None) -> Reply:
        if self.metrics_path and raw_path == self.metrics_path and method in ("GET", "HEAD"):
            return Reply(200, self.metrics.render(), metrics_mod.CONTENT_TYPE)
        if not is_api_path(raw_path):
            return Reply(404, NOT_FOUND_HTML, "text/html")
        headers = dict(CORS_HEADERS) if self.cors else {}
        if self.cors and method == "OPTIONS" and origin and origin.lower().startswith(("http://", "https://")):
            return Reply(200, b"", JSON, headers)
        try:
            return Reply(200, self._dispatch(method, raw_path, body), JSON, headers)
        except ServingError as exc:
            return Reply(http_status(exc.code), error_body(exc.message), JSON, headers)
        except Exception as exc:  # a bug here must still answer like the server would
            log.exception("Unhandled error for %s %s", method, raw_path)
            return Reply(500, error_body(f"Internal error: {exc}"), JSON, headers)

    def _dispatch(self, method: str, raw_path: str, body: bytes) -> bytes:
        route = parse_route(method, raw_path)
        if route is None or not route.verb:
            raise invalid(f"Malformed request: {method} {raw_path}")
        m = self.manager
        if route.verb in ("predict", "classify", "regress"):
            try:
                if route.verb == "predict":
                    out = m.predict_or_raise(body, route.model, route.version, route.label)
                else:
                    out = m.classify_or_regress(route.verb, body, route.model, route.version, route.label)
            except ServingError as exc:
                self.metrics.request(route.model, exc.code.name)
                raise
            self.metrics.request(route.model, Code.OK.name)
            return out
        if not route.model:
            raise invalid("Missing model name in request.")
        if route.verb == "metadata":
            return m.metadata(route.model, route.version, route.label)
        return m.status(route.model, route.version, route.label)
