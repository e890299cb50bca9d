"""Errors crossing the backend boundary, classified for retry decisions.

Callers decide on the class alone: `Transient` is retried with backoff and jitter,
`Permanent` is reported and waits for a spec change, so no library exception or status
code leaks into the reconciler or the kopf handlers.
"""

from __future__ import annotations


class BackendError(Exception):
    """Any failure talking to Cloud Run. `code` is the API's status name, for messages."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class Transient(BackendError):
    """Worth retrying as is: unavailable, rate limited, deadline, concurrent modification."""


class Permanent(BackendError):
    """Will fail again until something changes: invalid request, permission, quota, conflict."""


class NotFound(Permanent):
    """The resource does not exist."""


class RevisionNameConflict(Permanent):
    """A revision name already exists with a different template (Cloud Run's 409)."""


class NotOwned(Permanent):
    """The Cloud Run service exists but tfms did not create it for this object."""


class CredentialsMissing(Permanent):
    """No Application Default Credentials and no emulator endpoint."""


class Unreachable(Transient):
    """Nothing answers at the Cloud Run endpoint (connection refused, unknown host, no route)."""


class EtagConflict(Transient):
    """The IAM policy (or service) changed since it was read: re-read and retry the whole
    read-modify-write (Cloud Run's 409 ABORTED "There were concurrent policy changes", B-017)."""


class PublicMembersBlocked(Permanent):
    """The organisation forbids allUsers/allAuthenticatedUsers (Domain Restricted Sharing,
    `iam.allowedPolicyMemberDomains`); `invoker_iam_disabled` is the supported alternative."""
