"""Cloud Run Admin API v2 through the real async `google-cloud-run` client.

Services travel as proto3-JSON dicts (what the pure layers render and compare); this module
alone converts them to and from `run_v2` messages and maps client exceptions to ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import run_v2
from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcAsyncIOTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcAsyncIOTransport
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import field_mask_pb2, json_format

from tfms.backends.errors import (
    BackendError,
    CredentialsMissing,
    EtagConflict,
    NotFound,
    Permanent,
    PublicMembersBlocked,
    RevisionNameConflict,
    Transient,
    Unreachable,
)
from tfms.plan.iam import Binding, Policy

T = TypeVar("T")
Doc = dict[str, Any]
LIST_PAGE_SIZE = 1000  # a whole project+region (Cloud Run's service quota) in one List page

# Statuses that succeed when simply tried again later. ABORTED is Cloud Run's stale-etag /
# concurrent-change answer, which a fresh read-modify-write resolves.
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.TooManyRequests,
    gexc.DeadlineExceeded,
    gexc.GatewayTimeout,
    gexc.InternalServerError,
    gexc.Aborted,
)


def to_doc(message: Any) -> Doc:
    """A proto-plus message as proto3 JSON (camelCase, enum names, defaults omitted)."""
    pb = type(message).pb(message)
    doc: Doc = json_format.MessageToDict(pb, preserving_proto_field_name=False)
    return doc


def to_service(doc: Doc) -> run_v2.Service:
    service: run_v2.Service = run_v2.Service.from_json(json.dumps(doc))
    return service


def translate(exc: Exception, what: str) -> BackendError:
    """Our error for a client exception; the API's own message is kept for users."""
    message = getattr(exc, "message", None) or str(exc)
    code = type(exc).__name__
    if isinstance(exc, gexc.NotFound):
        return NotFound(f"{what}: {message}", code)
    if isinstance(exc, (gexc.AlreadyExists, gexc.Conflict)) and "different configuration" in message:
        return RevisionNameConflict(f"{what}: {message}", code)
    if isinstance(exc, _TRANSIENT):
        return Transient(f"{what}: {message}", code)
    if isinstance(exc, gexc.GoogleAPICallError):
        return Permanent(f"{what}: {message}", code)
    if isinstance(exc, gexc.RetryError):  # the client's own retries ran out: report what they last saw
        cause = exc.cause
        last = (getattr(cause, "message", None) or str(cause)) if cause is not None else message
        return Transient(f"{what}: {last}", code)
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return CredentialsMissing(
            "no Application Default Credentials found; run `gcloud auth application-default login`, "
            "use workload identity, or pass --endpoint / TFMS_CLOUDRUN_ENDPOINT for an emulator", code)
    if isinstance(exc, grpc.RpcError):
        return Transient(f"{what}: {exc}", code)
    if isinstance(exc, grpc.aio.UsageError):  # the channel was closed under a call: shutting down
        return Transient(f"{what}: the Cloud Run client is closed ({message})", code)
    raise exc


def translate_iam(exc: Exception, what: str) -> BackendError:
    """SetIamPolicy's answers that need their own class: a stale etag (ABORTED, or FAILED_PRECONDITION
    naming the etag) is retried as a whole read-modify-write; an organisation policy refusing public
    members is permanent and has a supported alternative."""
    message = getattr(exc, "message", None) or str(exc)
    code = type(exc).__name__
    if isinstance(exc, gexc.Aborted):
        return EtagConflict(f"{what}: {message}", code)
    if isinstance(exc, gexc.FailedPrecondition):
        lowered = message.lower()
        if "etag" in lowered or "concurrent" in lowered:
            return EtagConflict(f"{what}: {message}", code)
        if "permitted customer" in lowered or "organization policy" in lowered or "allowedpolicymemberdomains" \
                in lowered:
            return PublicMembersBlocked(f"{what}: {message}", code)
    return translate(exc, what)


def policy_from_pb(pb: policy_pb2.Policy) -> Policy:
    bindings = tuple(
        Binding(b.role, tuple(b.members),
                json_format.MessageToDict(b.condition) if b.HasField("condition") else None)
        for b in pb.bindings)
    return Policy(bindings, bytes(pb.etag), int(pb.version))


def policy_to_pb(policy: Policy) -> policy_pb2.Policy:
    pb = policy_pb2.Policy(version=policy.version, etag=policy.etag)
    for b in policy.bindings:
        binding = pb.bindings.add(role=b.role, members=list(b.members))
        if b.condition is not None:
            json_format.ParseDict(dict(b.condition), binding.condition)
    return pb


async def _call(what: str, fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await fn()
    except BackendError:
        raise
    except Exception as exc:  # translated or re-raised by `translate`
        raise translate(exc, what) from exc


class CloudRun:
    """One project-agnostic connection to the Cloud Run Admin API (or an emulator)."""

    def __init__(self, services: run_v2.ServicesAsyncClient, revisions: run_v2.RevisionsAsyncClient,
                 channel: grpc.aio.Channel | None = None) -> None:
        self._services = services
        self._revisions = revisions
        self._channel = channel

    @classmethod
    def connect(cls, endpoint: str | None = None) -> CloudRun:
        """`endpoint` (host:port) means a plaintext emulator; None means Google with ADC.

        Must be called inside the event loop that will use it (grpc.aio channels are bound
        to their loop).
        """
        if endpoint:
            channel = grpc.aio.insecure_channel(endpoint)
            return cls(
                run_v2.ServicesAsyncClient(transport=ServicesGrpcAsyncIOTransport(channel=channel)),
                run_v2.RevisionsAsyncClient(transport=RevisionsGrpcAsyncIOTransport(channel=channel)),
                channel,
            )
        try:
            return cls(run_v2.ServicesAsyncClient(), run_v2.RevisionsAsyncClient())
        except Exception as exc:
            raise translate(exc, "connecting to Cloud Run") from exc

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        else:
            await self._services.transport.close()  # type: ignore[no-untyped-call]
            await self._revisions.transport.close()  # type: ignore[no-untyped-call]

    async def get_service(self, name: str) -> Doc | None:
        try:
            svc = await _call(f"get {name}", lambda: self._services.get_service(name=name))
        except NotFound:
            return None
        return to_doc(svc)

    async def list_services(self, parent: str, page_size: int = LIST_PAGE_SIZE) -> list[Doc]:
        """Every service in a project+region, in as few pages as Cloud Run allows."""
        async def collect() -> list[Doc]:
            request = run_v2.ListServicesRequest(parent=parent, page_size=page_size)
            pager = await self._services.list_services(request=request)
            return [to_doc(s) async for s in pager]
        return await _call(f"list services in {parent}", collect)

    async def create_service(self, parent: str, service_id: str, body: Doc) -> str:
        """Start the create; returns the operation name without waiting for it."""
        request = run_v2.CreateServiceRequest(parent=parent, service_id=service_id, service=to_service(body))
        what = f"create {parent}/services/{service_id}"
        try:
            op = await _call(what, lambda: self._services.create_service(request=request))
        except Permanent as exc:
            if exc.code != "AlreadyExists":
                raise
            # Created since we read it (a dead reconciler's late create, another writer): a fresh
            # read decides what it is, ours to update or someone else's to leave alone.
            raise Transient(str(exc), exc.code) from exc
        return str(op.operation.name)

    async def update_service(self, name: str, body: Doc, etag: str = "") -> str:
        """Replace the service with `body` (never a read-modify-write of the template)."""
        service = to_service({**body, "name": name, **({"etag": etag} if etag else {})})
        op = await _call(f"update {name}", lambda: self._services.update_service(service=service))
        return str(op.operation.name)

    async def validate_create(self, parent: str, service_id: str, body: Doc) -> None:
        """Cloud Run's own dry run (`validate_only`): raises our error when it would refuse."""
        request = run_v2.CreateServiceRequest(parent=parent, service_id=service_id, service=to_service(body),
                                              validate_only=True)
        await _call(f"validate create {parent}/services/{service_id}",
                    lambda: self._services.create_service(request=request))

    async def validate_update(self, name: str, body: Doc, etag: str = "") -> None:
        service = to_service({**body, "name": name, **({"etag": etag} if etag else {})})
        request = run_v2.UpdateServiceRequest(service=service, validate_only=True)
        await _call(f"validate update {name}", lambda: self._services.update_service(request=request))

    async def set_labels(self, name: str, labels: dict[str, str], etag: str = "") -> None:
        """Replace only the service's labels (update_mask), leaving template and traffic alone."""
        service = run_v2.Service(name=name, labels=labels, etag=etag)
        request = run_v2.UpdateServiceRequest(service=service, update_mask=field_mask_pb2.FieldMask(paths=["labels"]))
        await _call(f"update labels of {name}", lambda: self._services.update_service(request=request))

    async def update_service_fields(self, name: str, fields: Doc, etag: str = "") -> str:
        """Replace only the named top-level fields (update_mask), e.g. annotations or
        invokerIamDisabled; the template and traffic are left exactly as they are."""
        service = to_service({**fields, "name": name, **({"etag": etag} if etag else {})})
        paths = sorted(_snake(k) for k in fields)
        request = run_v2.UpdateServiceRequest(service=service, update_mask=field_mask_pb2.FieldMask(paths=paths))
        try:
            op = await self._services.update_service(request=request)
        except Exception as exc:
            raise translate_iam(exc, f"update {', '.join(paths)} of {name}") from exc
        return str(op.operation.name)

    async def get_iam_policy(self, resource: str) -> Policy:
        request = iam_policy_pb2.GetIamPolicyRequest(resource=resource)
        pb = await _call(f"get IAM policy of {resource}", lambda: self._services.get_iam_policy(request=request))
        return policy_from_pb(pb)

    async def set_iam_policy(self, resource: str, policy: Policy) -> Policy:
        """Write `policy` whole, with the etag it was read with (never without: B-017)."""
        request = iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy_to_pb(policy))
        try:
            pb = await self._services.set_iam_policy(request=request)
        except Exception as exc:
            raise translate_iam(exc, f"set IAM policy of {resource}") from exc
        return policy_from_pb(pb)

    async def delete_service(self, name: str) -> None:
        try:
            await _call(f"delete {name}", lambda: self._services.delete_service(name=name))
        except NotFound:
            return

    async def list_revisions(self, service: str) -> list[Doc]:
        async def collect() -> list[Doc]:
            pager = await self._revisions.list_revisions(parent=service)
            return [to_doc(r) async for r in pager]
        return await _call(f"list revisions of {service}", collect)


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


REACH_TIMEOUT = 10.0


async def ensure_reachable(channel: grpc.aio.Channel, endpoint: str, timeout: float = REACH_TIMEOUT) -> None:
    """Connect once before any call, so a wrong --endpoint is one `Unreachable` naming it, rather
    than every call retrying to a RetryError. A refused connection fails at once (TRANSIENT_FAILURE)."""
    deadline = time.monotonic() + timeout
    state = channel.get_state(try_to_connect=True)
    while state is not grpc.ChannelConnectivity.READY:
        remaining = deadline - time.monotonic()
        if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE or remaining <= 0:
            raise Unreachable(f"cannot reach Cloud Run at {endpoint}: nothing answered"
                              + ("" if remaining > 0 else f" within {timeout:g}s")
                              + " (is the emulator running there? check --endpoint / TFMS_CLOUDRUN_ENDPOINT)",
                              "UNAVAILABLE")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        state = channel.get_state(try_to_connect=True)


@asynccontextmanager
async def connected(endpoint: str | None) -> AsyncIterator[CloudRun]:
    """A connection for one CLI command; an emulator endpoint must answer first (`Unreachable`)."""
    if endpoint and "://" in endpoint:  # gRPC takes host:port; a URL would only 'not answer'
        raise Permanent(f"the Cloud Run endpoint is HOST:PORT of a gRPC server, not a URL (got {endpoint!r}; "
                        "check --endpoint / TFMS_CLOUDRUN_ENDPOINT)", "INVALID_ARGUMENT")
    backend = CloudRun.connect(endpoint)
    try:
        if endpoint and backend._channel is not None:
            await ensure_reachable(backend._channel, endpoint)
        yield backend
    finally:
        await backend.close()
