"""IAM policy rules for Cloud Run services (resource-level Get/Set/TestIamPermissions).

Set replaces the whole policy; a non-empty stale etag is a conflict (B-017), conditions
are not supported on Cloud Run services, and members must use a known principal form.
"""

from __future__ import annotations

import os
import re

from google.iam.v1 import policy_pb2

from .errors import Violation, aborted, failed_precondition, invalid

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
DOMAIN_RESTRICTED_MESSAGE = (
    "One or more users named in the policy do not belong to a permitted customer, "
    "perhaps due to an organization policy."
)
CONCURRENT_CHANGE_MESSAGE = (
    "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DNS_NAME = rf"(?:{_LABEL}\.)+[A-Za-z]{{2,}}"  # labels, then a top-level domain of letters
_EMAIL = rf"[A-Za-z0-9!#$%&'*+=?^_`{{|}}~./-]+@{_DNS_NAME}"
_MEMBER_RES = (
    re.compile(rf"^user:{_EMAIL}$"),
    re.compile(rf"^group:{_EMAIL}$"),
    re.compile(rf"^serviceAccount:{_EMAIL}$"),
    re.compile(r"^domain:(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$"),
    re.compile(r"^allUsers$"),
    re.compile(r"^allAuthenticatedUsers$"),
    re.compile(r"^principal://iam\.googleapis\.com/\S+$"),  # every IAM principal identifier
    re.compile(r"^principalSet://iam\.googleapis\.com/\S+$"),
)
_ROLE_RE = re.compile(r"^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[^/]+/roles/[A-Za-z0-9_.]+)$")


def new_etag() -> bytes:
    return os.urandom(8)


def empty_policy() -> policy_pb2.Policy:
    return policy_pb2.Policy(version=1, etag=new_etag())


def member_ok(member: str) -> bool:
    return any(r.match(member) for r in _MEMBER_RES)


def validate_policy(policy: policy_pb2.Policy) -> list[Violation]:
    out: list[Violation] = []
    if policy.version not in (0, 1, 3):
        out.append(Violation("policy.version", "must be 1 or 3"))
    for i, binding in enumerate(policy.bindings):
        path = f"policy.bindings[{i}]"
        if not _ROLE_RE.match(binding.role):
            out.append(Violation(f"{path}.role", f"invalid role {binding.role!r}"))
        if binding.HasField("condition"):
            out.append(Violation(f"{path}.condition", "IAM conditions are not supported on Cloud Run services"))
        for j, member in enumerate(binding.members):
            if not member_ok(member):
                out.append(Violation(f"{path}.members[{j}]", f"invalid member {member!r}"))
    return out


def apply_set(
    current: policy_pb2.Policy, requested: policy_pb2.Policy, public_blocked: bool = False
) -> policy_pb2.Policy:
    """The policy stored by SetIamPolicy: the requested one, normalised, with a fresh etag.
    `public_blocked` is Domain Restricted Sharing (`iam.allowedPolicyMemberDomains`)."""
    if requested.etag and requested.etag != current.etag:
        raise aborted(CONCURRENT_CHANGE_MESSAGE)
    violations = validate_policy(requested)
    if violations:
        raise invalid(violations)
    if public_blocked and any(m in PUBLIC_MEMBERS for b in requested.bindings for m in b.members):
        raise failed_precondition(DOMAIN_RESTRICTED_MESSAGE)
    merged: dict[str, list[str]] = {}
    for binding in requested.bindings:
        members = merged.setdefault(binding.role, [])
        members += [m for m in binding.members if m not in members]
    stored = policy_pb2.Policy(version=1, etag=new_etag())
    for role, members in merged.items():
        if members:  # IAM drops bindings left with no members
            stored.bindings.add(role=role, members=sorted(members))
    return stored


def granted_permissions(permissions: list[str]) -> list[str]:
    """Locally every caller holds every Cloud Run permission it asks about."""
    bad = [p for p in permissions if "*" in p or p.count(".") < 2]
    if bad:
        raise invalid([Violation("permissions", f"invalid permission {bad[0]!r}")])
    return [p for p in permissions if p.startswith("run.")]
