"""Emulator settings (all optional; the defaults behave like Cloud Run, only faster)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmulatorConfig:
    ready_delay: float = 0.0
    """Seconds the default `SimulatedExecutor` takes to make a revision ready."""

    operation_polls: int = 0
    """Initial value of `control.operation_polls`: GetOperation calls answered `done=False`."""

    server_defaults: bool = True
    """Fill documented template defaults (port 8080/http1, timeout 300s, max 100, concurrency)."""

    require_revision_prefix: bool = True
    """Client-chosen revision names must start with `{service}-` (the Knative rule in the reference).
    Google's own v2 Terraform sample uses unprefixed names (cases/inputs/012), so this may be stricter
    than Cloud Run; False accepts any DNS-1035 label."""

    max_revisions_per_service: int = 1000
    """Cloud Run's cap; beyond it the oldest retired revisions are deleted automatically."""

    max_services_per_location: int = 1000
    """Cloud Run's per project+region service quota (RESOURCE_EXHAUSTED beyond it)."""

    caller: str = "local-user@tfms.local"
    """Recorded as `creator`/`last_modifier` (there is no authentication locally)."""

    seed: int | None = None
    """Seed for the random suffix of generated revision names (None: unpredictable)."""

    max_serving_revisions_per_location: int = 4000
    """Cloud Run's per project+region cap on serving revisions; a deploy that would exceed it
    fails with the revision reason ACTIVE_REVISION_LIMIT_REACHED and traffic stays put."""

    max_tags_per_location: int = 2000
    """Cloud Run's per project+region tag quota; beyond it, tags with no traffic are deleted
    oldest first."""

    public_members_blocked: bool = False
    """Act as if the org policy `iam.allowedPolicyMemberDomains` (Domain Restricted Sharing)
    applied: SetIamPolicy with allUsers/allAuthenticatedUsers fails (FAILED_PRECONDITION);
    `invoker_iam_disabled=true` remains the way to make a service public."""

    state_file: str | None = None
    """Keep services, revisions, IAM policies and operations in this JSON file across restarts
    (see `tfms.emulator.persistence` for what is and is not kept). None: memory only."""

    max_workers: int = 16
    """gRPC (and REST) server threads."""
