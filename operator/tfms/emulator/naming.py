"""Resource names, ID rules and Cloud Run-style URLs.

Kept apart from the control plane so the rules (and the URL shapes users see) can be
read and tested on their own.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from collections.abc import Container
from dataclasses import dataclass

# v2 service IDs: a letter first, lowercase letters/digits/hyphens, no trailing hyphen, < 50 chars.
_SERVICE_ID_RE = re.compile(r"^[a-z](?:[-a-z0-9]*[a-z0-9])?$")
SERVICE_ID_MAX = 49
_DNS1035_RE = re.compile(r"^[a-z](?:[-a-z0-9]*[a-z0-9])?$")
DNS1035_MAX = 63

_SEGMENT = r"([^/]+)"
_PARENT_RE = re.compile(rf"^projects/{_SEGMENT}/locations/{_SEGMENT}$")
_SERVICE_RE = re.compile(rf"^projects/{_SEGMENT}/locations/{_SEGMENT}/services/{_SEGMENT}$")
_REVISION_RE = re.compile(rf"^projects/{_SEGMENT}/locations/{_SEGMENT}/services/{_SEGMENT}/revisions/{_SEGMENT}$")

# Region codes as they appear in *.a.run.app hosts. Unknown regions get a derived code.
_REGION_CODES = {
    "us-central1": "uc",
    "us-east1": "ue",
    "us-east4": "uk",
    "us-west1": "uw",
    "us-west2": "wl",
    "europe-west1": "ew",
    "europe-west2": "nw",
    "europe-west3": "ey",
    "europe-west4": "ez",
    "europe-north1": "lz",
    "asia-east1": "de",
    "asia-northeast1": "an",
    "asia-southeast1": "as",
    "asia-south1": "el",
    "australia-southeast1": "ts",
    "northamerica-northeast1": "nn",
    "southamerica-east1": "rj",
}


def service_id_problem(service_id: str) -> str | None:
    """Why `service_id` is not a valid v2 service ID, or None when it is."""
    if not service_id:
        return "is required"
    if len(service_id) > SERVICE_ID_MAX:
        return f"must be fewer than 50 characters (got {len(service_id)})"
    if not service_id[0].isalpha() or not service_id[0].islower():
        return "must start with a lowercase letter"
    if service_id.endswith("-"):
        return "must not end with a hyphen"
    if not _SERVICE_ID_RE.match(service_id):
        return "must contain only lowercase letters, digits and hyphens"
    return None


def dns1035_problem(value: str, max_len: int = DNS1035_MAX) -> str | None:
    """Why `value` is not a DNS-1035 label (Knative's rule for revision names and tags)."""
    if not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"must be at most {max_len} characters (got {len(value)})"
    if not _DNS1035_RE.match(value):
        return (
            "must be a DNS-1035 label: lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit"
        )
    return None


@dataclass(frozen=True)
class ServiceName:
    """`projects/{project}/locations/{location}/services/{service_id}`."""

    project: str
    location: str
    service_id: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def full(self) -> str:
        return f"{self.parent}/services/{self.service_id}"

    def revision(self, revision_id: str) -> str:
        return f"{self.full}/revisions/{revision_id}"


def parse_parent(parent: str) -> tuple[str, str] | None:
    """(project, location) of `projects/P/locations/L`, or None."""
    m = _PARENT_RE.match(parent)
    return (m.group(1), m.group(2)) if m else None


def parse_service(name: str) -> ServiceName | None:
    m = _SERVICE_RE.match(name)
    return ServiceName(m.group(1), m.group(2), m.group(3)) if m else None


def parse_revision(name: str) -> tuple[ServiceName, str] | None:
    """(service name, revision id) of a full revision name, or None."""
    m = _REVISION_RE.match(name)
    if not m:
        return None
    return ServiceName(m.group(1), m.group(2), m.group(3)), m.group(4)


def generated_revision_id(service_id: str, generation: int, taken: Container[str], rng: random.Random) -> str:
    """`{service}-{generation:05d}-{xyz}`, Cloud Run's server-side revision name."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    while True:
        suffix = "".join(rng.choice(letters) for _ in range(3))
        candidate = f"{service_id}-{generation:05d}-{suffix}"
        if candidate not in taken:
            return candidate


def project_hash(project: str) -> str:
    """The 10-character per-project part of `*.a.run.app` hosts (stable for a project)."""
    digest = hashlib.sha256(f"tfms-emulator/{project}".encode()).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:10]


def project_number(project: str) -> str:
    """A 12-digit project number: the project itself when numeric, else derived from it."""
    if project.isdigit():
        return project
    value = int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big")
    return str(100_000_000_000 + value % 900_000_000_000)


def region_code(region: str) -> str:
    """Two-letter region code used in `*.a.run.app` hosts."""
    known = _REGION_CODES.get(region)
    if known:
        return known
    parts = [p for p in re.split(r"[-\d]+", region) if p]
    if len(parts) >= 2:
        return (parts[0][0] + parts[1][0]).lower()
    return (region[:2] or "xx").lower()


def service_url(project: str, region: str, service_id: str) -> str:
    return f"https://{service_id}-{project_hash(project)}-{region_code(region)}.a.run.app"


def tag_url(project: str, region: str, service_id: str, tag: str) -> str:
    return f"https://{tag}---{service_id}-{project_hash(project)}-{region_code(region)}.a.run.app"


def deterministic_url(project: str, region: str, service_id: str) -> str:
    """The newer `{service}-{project number}.{region}.run.app` form listed in `urls`."""
    return f"https://{service_id}-{project_number(project)}.{region}.run.app"
