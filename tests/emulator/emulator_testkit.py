"""Helpers for the emulator tests (a uniquely named module, so it never clashes with other test dirs)."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.future import polling
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport
from google.rpc import error_details_pb2

from tfms.emulator import Emulator, RevisionEvents, RevisionLaunch

TRANSPORTS = ("grpc", "rest")

# What each transport raises for a server status (reference: testing-without-a-cluster.md, "Error mapping").
RAISES: dict[str, dict[str, type[exceptions.GoogleAPICallError]]] = {
    "grpc": {
        "INVALID_ARGUMENT": exceptions.InvalidArgument,
        "NOT_FOUND": exceptions.NotFound,
        "ALREADY_EXISTS": exceptions.AlreadyExists,
        "ABORTED": exceptions.Aborted,
        "FAILED_PRECONDITION": exceptions.FailedPrecondition,
        "RESOURCE_EXHAUSTED": exceptions.ResourceExhausted,
        "PERMISSION_DENIED": exceptions.PermissionDenied,
        "UNAVAILABLE": exceptions.ServiceUnavailable,
        "DEADLINE_EXCEEDED": exceptions.DeadlineExceeded,
        "INTERNAL": exceptions.InternalServerError,
    },
    "rest": {
        "INVALID_ARGUMENT": exceptions.BadRequest,
        "NOT_FOUND": exceptions.NotFound,
        "ALREADY_EXISTS": exceptions.Conflict,
        "ABORTED": exceptions.Conflict,
        "FAILED_PRECONDITION": exceptions.BadRequest,
        "RESOURCE_EXHAUSTED": exceptions.TooManyRequests,
        "PERMISSION_DENIED": exceptions.Forbidden,
        "UNAVAILABLE": exceptions.ServiceUnavailable,
        "DEADLINE_EXCEEDED": exceptions.GatewayTimeout,
        "INTERNAL": exceptions.InternalServerError,
    },
}
_REST_PREFIX = re.compile(r"^[A-Z]+ \S+: ")

PROJECT = "example-project"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
IMAGE = "tensorflow/serving:2.19.0"
IMAGE2 = "tensorflow/serving:2.20.0"
FAST = polling.DEFAULT_POLLING.with_delay(initial=0.01, maximum=0.05)
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED
RECONCILING = run_v2.Condition.State.CONDITION_RECONCILING


def template(image: str = IMAGE, revision: str = "", **fields: Any) -> run_v2.RevisionTemplate:
    return run_v2.RevisionTemplate(revision=revision, containers=[run_v2.Container(image=image)], **fields)


def to_revision(revision: str, percent: int, tag: str = "") -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=BY_REVISION, revision=revision, percent=percent, tag=tag)


def to_latest(percent: int = 100, tag: str = "") -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=LATEST, percent=percent, tag=tag)


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def finish(op: Any) -> Any:
    """Wait for an LRO with fast polling (the client's `result` is untyped)."""
    return op.result(timeout=5, polling=FAST)


def violated_fields(exc: exceptions.GoogleAPICallError) -> set[str]:
    """Field paths from the BadRequest details (pb2 over gRPC, proto3 JSON dicts over REST)."""
    fields = set()
    for detail in exc.details:
        if isinstance(detail, error_details_pb2.BadRequest):
            fields |= {v.field for v in detail.field_violations}
        elif isinstance(detail, dict) and detail.get("@type", "").endswith("/google.rpc.BadRequest"):
            fields |= {v["field"] for v in detail.get("fieldViolations", [])}
    return fields


def message_of(exc: exceptions.GoogleAPICallError) -> str:
    """The server's message (REST errors prefix it with the HTTP verb and URL)."""
    return _REST_PREFIX.sub("", exc.message)


class Api:
    """Thin helpers over the real sync clients so tests read as Cloud Run calls."""

    def __init__(
        self,
        emulator: Emulator,
        services: run_v2.ServicesClient,
        revisions: run_v2.RevisionsClient,
        transport: str = "grpc",
    ):
        self.emulator = emulator
        self.services = services
        self.revisions = revisions
        self.transport = transport

    @contextlib.contextmanager
    def raises(self, status: str) -> Iterator[pytest.ExceptionInfo[exceptions.GoogleAPICallError]]:
        """Expect exactly the exception class this transport raises for a server status."""
        expected = RAISES[self.transport][status]
        with pytest.raises(exceptions.GoogleAPICallError) as info:
            yield info
        assert type(info.value) is expected, f"{self.transport}: {type(info.value).__name__} for {status}"

    @staticmethod
    def name(service_id: str) -> str:
        return f"{PARENT}/services/{service_id}"

    def create(self, service_id: str, tpl: run_v2.RevisionTemplate | None = None, **fields: Any) -> Any:
        service = run_v2.Service(template=tpl or template(), **fields)
        return self.services.create_service(parent=PARENT, service_id=service_id, service=service)

    def create_ready(
        self, service_id: str, tpl: run_v2.RevisionTemplate | None = None, **fields: Any
    ) -> run_v2.Service:
        result: run_v2.Service = self.create(service_id, tpl, **fields).result(timeout=5, polling=FAST)
        return result

    def update(self, service: run_v2.Service, **request: Any) -> Any:
        return self.services.update_service(request=run_v2.UpdateServiceRequest(service=service, **request))

    def update_ready(self, service: run_v2.Service, **request: Any) -> run_v2.Service:
        result: run_v2.Service = self.update(service, **request).result(timeout=5, polling=FAST)
        return result

    def get(self, service_id: str) -> run_v2.Service:
        return self.services.get_service(name=self.name(service_id))

    def revision_ids(self, service_id: str) -> list[str]:
        return [short(r.name) for r in self.revisions.list_revisions(parent=self.name(service_id))]


class ManualExecutor:
    """An executor whose revisions settle only when the test says so (to observe transient state)."""

    def __init__(self) -> None:
        self.events: RevisionEvents | None = None
        self.launched: list[RevisionLaunch] = []
        self.routes: dict[str, tuple[list[tuple[str, int]], dict[str, str]]] = {}
        self.stopped: list[str] = []
        self._cond = threading.Condition()

    def bind(self, events: RevisionEvents) -> None:
        self.events = events

    def launch(self, launch: RevisionLaunch) -> None:
        with self._cond:
            self.launched.append(launch)
            self._cond.notify_all()

    def wait_launched(self, count: int, timeout: float = 5.0) -> RevisionLaunch:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.launched) >= count, timeout), "revision never launched"
            return self.launched[count - 1]

    def ready(self, revision: str) -> None:
        assert self.events is not None
        self.events.revision_ready(revision)

    def fail(self, revision: str, reason: str, message: str) -> None:
        assert self.events is not None
        self.events.revision_failed(revision, reason, message)

    def stop_revision(self, revision: str) -> None:
        self.stopped.append(revision)

    def set_routes(self, service: str, service_id: str, split: list[tuple[str, int]], tags: dict[str, str]) -> None:
        self.routes[service] = (split, tags)

    def service_url(self, service: str, service_id: str) -> str:
        return f"https://{service_id}.manual.test"

    def tag_url(self, service: str, service_id: str, tag: str) -> str:
        return f"https://{tag}---{service_id}.manual.test"

    def delete_service(self, service: str) -> None:
        self.routes.pop(service, None)

    def close(self) -> None:
        pass


def clients(address: str) -> tuple[grpc.Channel, run_v2.ServicesClient, run_v2.RevisionsClient]:
    channel = grpc.insecure_channel(address)
    services = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
    revisions = run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel))
    return channel, services, revisions


def rest_clients(url: str) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
    """The real clients over REST, as the reference's "Client construction" table builds them."""
    options = ClientOptions(api_endpoint=url)
    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    services = run_v2.ServicesClient(transport="rest", credentials=anonymous, client_options=options)
    revisions = run_v2.RevisionsClient(transport="rest", credentials=anonymous, client_options=options)
    return services, revisions


@contextlib.contextmanager
def connect(emulator: Emulator, transport: str) -> Iterator[Api]:
    """An `Api` over one transport of a started emulator (REST needs `start(rest_port=...)`)."""
    if transport == "rest":
        services, revisions = rest_clients(emulator.rest_url)
        try:
            yield Api(emulator, services, revisions, "rest")
        finally:
            services.transport.close()  # type: ignore[no-untyped-call]
            revisions.transport.close()  # type: ignore[no-untyped-call]
    else:
        channel, services, revisions = clients(emulator.address)
        try:
            yield Api(emulator, services, revisions, "grpc")
        finally:
            channel.close()
