"""REST URL parsing (`http_rest_api_util.cc ParseModelInfo`).

The patterns are TF Serving's, case-insensitive, matched against the raw (still
percent-encoded) path; model names and labels are then unescaped like
`curl_easy_unescape` (no `+` to space).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from tfms.runtime.errors import invalid

API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Route:
    """A parsed API request. `verb` is predict/classify/regress/status/metadata, or ""
    when the path matched but the verb did not (upstream compares it case-sensitively)."""

    model: str
    version: int | None
    label: str | None
    verb: str


def is_api_path(path: str) -> bool:
    """Only these paths reach the handler; anything else is the web server's own 404."""
    return API_PATH.fullmatch(path) is not None


def parse_route(method: str, path: str) -> Route | None:
    """None means "Malformed request" (no pattern for this method matched)."""
    if method == "POST":
        m = _PREDICT.fullmatch(path)
        if m is None:
            return None
        name, version, label, verb = m.groups()
        verb = verb if verb in ("classify", "regress", "predict") else ""
    elif method == "GET":
        m = _STATUS.fullmatch(path)
        if m is None:
            return None
        name, version, label, sub = m.groups()
        verb = "metadata" if sub == "metadata" else "status"
    else:
        return None
    number: int | None = None
    if version is not None:
        number = int(version)
        if number > _INT64_MAX:
            raise invalid(f"Failed to convert version: {version} to numeric.")
    model = unquote(name, errors="replace") if name else ""
    decoded_label = unquote(label, errors="replace") if label else None
    if number is not None and decoded_label is not None:  # unreachable with these patterns
        raise invalid(
            f"Both model version ({number}) and model version label ({decoded_label}) cannot be supplied."
        )
    return Route(model, number, decoded_label, verb)
