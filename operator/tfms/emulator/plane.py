"""The control plane: Cloud Run Admin API v2 semantics over in-memory records.

One lock guards all state. Executor calls are queued on an `EffectRunner` while the lock
is held and run after it, in order; URLs (which come from the executor) are computed
before taking the lock. The executor reports revision outcomes through `revision_ready`
and `revision_failed`, from any thread.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import grpc
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message

from . import iam, persistence, reconcile
from .conditions import READY, State, condition
from .config import EmulatorConfig
from .control import Control
from .defaults import apply_template_defaults, ingress_container
from .effects import EffectRunner
from .errors import ApiError, Violation, aborted, already_exists, failed_precondition, invalid, not_found
from .executor import ContainerSpec, Executor, RevisionLaunch
from .history import ServiceHistory
from .naming import (
    ServiceName,
    generated_revision_id,
    parse_parent,
    parse_revision,
    parse_service,
    service_id_problem,
)
from .operations import OperationRecord, OperationStore, decode_token, encode_token
from .state import (
    SERVICE_OUTPUT_FIELDS,
    Phase,
    RevisionRecord,
    ServiceRecord,
    StateView,
    clone,
    same,
    spec_of,
)
from .validation import validate_service, validate_traffic

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
WAIT_OPERATION_MAX_S = 60.0
_CAMEL = re.compile(r"([A-Z])")
_SERVICE_INPUT_FIELDS = frozenset(
    f.name for f in run_v2.Service.pb().DESCRIPTOR.fields if f.name not in SERVICE_OUTPUT_FIELDS
) - {"name"}
_REVISION_FIELDS = run_v2.Revision.pb().DESCRIPTOR.fields_by_name
# Template fields a Revision repeats verbatim (same name and same type).
_TEMPLATE_TO_REVISION = tuple(
    f.name
    for f in run_v2.RevisionTemplate.pb().DESCRIPTOR.fields
    if f.name in _REVISION_FIELDS
    and f.name != "revision"
    and f.type == _REVISION_FIELDS[f.name].type
    and f.is_repeated == _REVISION_FIELDS[f.name].is_repeated
    and (f.message_type is None or f.message_type.full_name == _REVISION_FIELDS[f.name].message_type.full_name)
)


def _now() -> datetime:
    return datetime.now(UTC)


def _page(items: list[T], key: Callable[[T], int], page_size: int, token: str) -> tuple[list[T], str]:
    """A stable page: items after the key encoded in `token`, so deletions never skip items."""
    if page_size < 0:
        raise invalid([Violation("page_size", "must not be negative")])
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    after = decode_token(token, "page_token") if token else -1
    rest = [item for item in items if key(item) > after]
    page = rest[:size]
    return page, (encode_token(key(page[-1])) if len(rest) > size else "")


class ControlPlane:
    """Every RPC's semantics; also the `RevisionEvents` sink the executor reports to."""

    def __init__(self, config: EmulatorConfig, executor: Executor, control: Control) -> None:
        self._config = config
        self._executor = executor
        self._control = control
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._services: dict[str, ServiceRecord] = {}
        self._policies: dict[str, policy_pb2.Policy] = {}
        self._ops = OperationStore()
        self._effects = EffectRunner()
        self._rng = random.Random(config.seed)
        self._seq = 0
        self._closing = False
        self._relaunched: set[str] = set()  # restored ready revisions launched again, not yet settled
        self._store = persistence.StateFile(config.state_file) if config.state_file else None
        self.history = ServiceHistory()  # what the status page's timelines are drawn from
        if self._store is not None:
            restored = self._store.load()
            if restored is not None:
                self._services = restored.services
                self._policies = restored.policies
                self._ops.restore(restored.operations)
                self._seq = restored.seq
        self.history.observe({n: r.service for n, r in self._services.items()})

    # -- lifecycle and observation ---------------------------------------------------------------
    def close(self) -> None:
        self._effects.close()
        with self._lock:
            if self._store is not None:  # later executor reports change memory only
                self._store.close()
                self._store = None

    def resume(self) -> None:
        """After the executor is bound: launch again what a state file brought back (every
        revision that was ready or still starting); each service's routes follow once the
        revisions they name have settled again."""
        with self._cond:
            for record in self._services.values():
                for rrec in sorted(record.revisions.values(), key=lambda r: r.seq):
                    if rrec.phase is Phase.FAILED:
                        continue
                    if rrec.phase is Phase.READY:
                        self._relaunched.add(str(rrec.revision.name))
                    self._effects.submit(partial(self._launch, self._launch_for(record, rrec)))

    def _commit(self) -> None:
        """Persist the state (lock held), so an acknowledged change survives a restart."""
        self.history.observe({n: r.service for n, r in self._services.items()})
        if self._store is not None:
            self._store.save(persistence.encode(self._services, self._policies, self._ops.all(), self._seq))

    def wake_waiters(self) -> None:
        """Answer every pending WaitOperation now (the emulator is stopping)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def wait_effects(self, timeout: float | None = None) -> bool:
        """True once every queued executor call has run."""
        return self._effects.wait_idle(timeout)

    def snapshot(self) -> StateView:
        with self._lock:
            return StateView(
                services={n: clone(r.service) for n, r in self._services.items()},
                revisions={
                    str(rr.revision.name): clone(rr.revision)
                    for r in self._services.values()
                    for rr in r.revisions.values()
                },
                policies={n: self._copy_policy(p) for n, p in self._policies.items()},
                operations={op.name: op.to_pb() for op in self._ops.all()},
            )

    def wait_until(self, predicate: Callable[[StateView], bool], timeout: float) -> bool:
        """Block until `predicate(snapshot)` holds; re-checked on every state change."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.snapshot()):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(min(remaining, 0.05))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @staticmethod
    def _copy_policy(policy: policy_pb2.Policy) -> policy_pb2.Policy:
        copy = policy_pb2.Policy()
        copy.CopyFrom(policy)
        return copy

    # -- services ---------------------------------------------------------------------------------
    def create_service(self, req: run_v2.CreateServiceRequest) -> operations_pb2.Operation:
        violations: list[Violation] = []
        parent = parse_parent(req.parent)
        if parent is None or parent[1] == "-":
            violations.append(Violation("parent", "must be projects/{project}/locations/{location}"))
        problem = service_id_problem(req.service_id)
        if problem:
            violations.append(Violation("service_id", problem))
        violations += validate_service(
            req.service, req.service_id, revision_prefix=self._config.require_revision_prefix
        )
        if violations or parent is None:
            raise invalid(violations)
        name = ServiceName(parent[0], parent[1], req.service_id)
        spec = self._normalise(req.service, name)
        urls = self._urls(name, spec)
        with self._cond:
            if name.full in self._services:
                raise already_exists(f"Resource '{name.full}' already exists.")
            self._check_service_quota(name)
            return self._accept(name, None, spec, urls, req.validate_only)

    def update_service(self, req: run_v2.UpdateServiceRequest) -> operations_pb2.Operation:
        name = parse_service(req.service.name)
        if name is None:
            raise invalid([Violation("service.name", "must be projects/{p}/locations/{l}/services/{s}")])
        paths = self._mask_paths(req)
        request_spec = self._normalise(req.service, name, defaults=False)
        urls = self._urls(name, request_spec)
        with self._cond:
            record = self._services.get(name.full)
            if record is None:
                if not req.allow_missing:
                    raise not_found(f"Resource '{name.full}' was not found.")
                self._check_service_quota(name)
                merged = request_spec
            else:
                if req.service.etag and req.service.etag != record.service.etag:
                    raise aborted(
                        f"The etag '{req.service.etag}' does not match the current etag of '{name.full}'; "
                        "read the service again and retry."
                    )
                merged = self._merge(record.service, request_spec, paths)
            violations = validate_service(merged, name.service_id, revision_prefix=self._config.require_revision_prefix)
            if violations:
                raise invalid(violations)
            if self._config.server_defaults:
                apply_template_defaults(merged.template)
            return self._accept(name, record, merged, urls, req.validate_only)

    def delete_service(self, req: run_v2.DeleteServiceRequest) -> operations_pb2.Operation:
        name = self._service_name(req.name, "name")
        with self._cond:
            record = self._record(name)
            if req.etag and req.etag != record.service.etag:
                raise aborted(f"The etag '{req.etag}' does not match the current etag of '{name.full}'.")
            now = _now()
            gone = clone(record.service)
            gone.delete_time = now
            gone.reconciling = False
            if req.validate_only:
                return self._finished_op(name.parent, name.full, run_v2.Service.pb(gone), 0)
            failed = self._injected_operation_failure(name.parent, name.full, run_v2.Service.pb(record.service))
            if failed is not None:
                return failed
            op = self._ops.create(name.parent, name.full, run_v2.Service.pb(gone), self._control.polls)
            self._ops.succeed(op, run_v2.Service.pb(gone))
            del self._services[name.full]
            self._policies.pop(name.full, None)
            for pending in record.pending_ops:
                self._ops.fail(
                    pending,
                    grpc.StatusCode.ABORTED,
                    f"Service '{name.service_id}' was deleted before it finished reconciling.",
                )
            for rrec in record.revisions.values():
                self._effects.submit(partial(self._executor.stop_revision, str(rrec.revision.name)))
            self._effects.submit(partial(self._executor.delete_service, name.full))
            self._commit()
            self._cond.notify_all()
            return op.to_pb()

    def get_service(self, req: run_v2.GetServiceRequest) -> run_v2.Service:
        name = self._service_name(req.name, "name")
        with self._lock:
            return clone(self._record(name).service)

    def list_services(self, req: run_v2.ListServicesRequest) -> run_v2.ListServicesResponse:
        parent = parse_parent(req.parent)
        if parent is None:
            raise invalid([Violation("parent", "must be projects/{project}/locations/{location}")])
        project, location = parent
        if location == "-":  # documented on ListServicesRequest.parent
            raise invalid([Violation("parent", 'the location must be a region and cannot be the "-" wildcard')])
        with self._lock:
            records = sorted(
                (
                    r
                    for r in self._services.values()
                    if r.name.project == project and r.name.location == location
                ),
                key=lambda r: r.seq,
            )
            page, token = _page(records, lambda r: r.seq, req.page_size, req.page_token)
            return run_v2.ListServicesResponse(services=[clone(r.service) for r in page], next_page_token=token)

    # -- deploy: the shared path of create, update and upsert -------------------------------------
    def _accept(
        self,
        name: ServiceName,
        record: ServiceRecord | None,
        spec: run_v2.Service,
        urls: dict[str, str],
        validate_only: bool,
    ) -> operations_pb2.Operation:
        """Deploy (lock held), then persist before the operation is returned."""
        op = self._deploy(name, record, spec, urls, validate_only)
        self._commit()
        return op

    def _finished_op(self, parent: str, target: str, message: Message, polls: int) -> operations_pb2.Operation:
        op = self._ops.create(parent, target, message, polls)
        self._ops.succeed(op, message)
        return op.to_pb()

    def _injected_operation_failure(
        self, parent: str, target: str, metadata: Message
    ) -> operations_pb2.Operation | None:
        """`control.fail_next_operation`: an accepted request whose operation fails, state untouched."""
        fault = self._control.take_operation_failure()
        if fault is None:
            return None
        op = self._ops.create(parent, target, metadata, self._control.polls)
        self._ops.fail(op, fault[0], fault[1])
        self._commit()
        return op.to_pb()

    def _deploy(
        self,
        name: ServiceName,
        record: ServiceRecord | None,
        spec: run_v2.Service,
        urls: dict[str, str],
        validate_only: bool,
    ) -> operations_pb2.Operation:
        """Accept a new spec (lock held): maybe a revision, always a reconciliation, an LRO."""
        template = spec.template
        template_changed = record is None or not same(template, record.service.template)
        new_revision_id = ""
        reused: RevisionRecord | None = None
        if template_changed and template.revision:
            existing = record.revisions.get(template.revision) if record else None
            if existing is None:
                new_revision_id = template.revision
            elif not same(existing.template, template):
                raise already_exists(
                    f"Revision named '{template.revision}' with different configuration already exists."
                )
            else:
                reused = existing
        known = set(record.revisions) if record else set()
        violations = validate_traffic(spec.traffic, known, new_revision_id or None)
        if violations:
            raise invalid(violations)
        spec_changed = record is None or not same(spec_of(spec), spec_of(record.service))

        if validate_only:
            preview = clone(record.service) if record else run_v2.Service(name=name.full)
            self._copy_spec(spec, preview)
            return self._finished_op(name.parent, name.full, run_v2.Service.pb(preview), 0)

        current = record.service if record is not None else run_v2.Service(name=name.full)
        failed = self._injected_operation_failure(name.parent, name.full, run_v2.Service.pb(current))
        if failed is not None:
            return failed

        if record is not None and not spec_changed:
            op = self._ops.create(name.parent, name.full, run_v2.Service.pb(record.service), self._control.polls)
            if record.service.reconciling:
                record.pending_ops.append(op)
            else:
                self._ops.succeed(op, run_v2.Service.pb(record.service))
            return op.to_pb()

        now = _now()
        if record is None:
            record = ServiceRecord(
                service=run_v2.Service(
                    name=name.full,
                    uid=str(uuid.uuid4()),
                    create_time=now,
                    creator=self._config.caller,
                ),
                name=name,
                seq=self._next_seq(),
            )
            self._services[name.full] = record
        svc = record.service
        self._copy_spec(spec, svc)
        svc.generation += 1
        svc.update_time = now
        svc.last_modifier = self._config.caller
        record.urls.update(urls)
        if template_changed:
            if reused is not None:
                target = str(reused.revision.name)
            else:
                if not new_revision_id:
                    new_revision_id = generated_revision_id(
                        name.service_id, svc.generation, record.revisions, self._rng
                    )
                target = self._create_revision(record, new_revision_id, template, now)
            svc.latest_created_revision = target
            record.awaiting = target
        reconcile.mark_reconciling(record, template_changed, now)
        op = self._ops.create(name.parent, name.full, run_v2.Service.pb(svc), self._control.polls)
        record.pending_ops.append(op)
        self._converge(record)
        self._enforce_revision_limit(record)
        self._cond.notify_all()
        return op.to_pb()

    def _converge(self, record: ServiceRecord) -> None:
        """Finish the reconciliation if the revisions it needs have settled (lock held)."""
        if not record.service.reconciling:
            return
        step = reconcile.next_step(record)
        if isinstance(step, reconcile.Wait):
            return
        now = _now()
        if isinstance(step, reconcile.Succeed):
            step = self._check_active_limit(record, step, now)
        if isinstance(step, reconcile.Succeed):
            reconcile.apply_success(record, step.latest_ready, now)
            self._enforce_tag_limit(record, now)
            self._route(record)
            for op in record.pending_ops:
                self._ops.succeed(op, run_v2.Service.pb(record.service))
        else:
            reconcile.apply_failure(record, step, now)
            for op in record.pending_ops:
                self._ops.fail(op, grpc.StatusCode.FAILED_PRECONDITION, step.message)
        record.pending_ops.clear()

    def _route(self, record: ServiceRecord) -> None:
        split, tags = reconcile.resolve_routes(record)
        full, sid = record.name.full, record.name.service_id
        self._effects.submit(partial(self._executor.set_routes, full, sid, split, tags))

    def _enforce_tag_limit(self, record: ServiceRecord, now: datetime) -> None:
        """Cloud Run's tags per project+region: beyond the quota, tags with no traffic are
        deleted oldest first, in any service of the region (lock held)."""
        serving = {t.tag for t in record.service.traffic_statuses if t.tag}
        record.tag_seq = {tag: record.tag_seq.get(tag) or self._next_seq() for tag in sorted(serving)}
        region = [r for r in self._services.values() if r.name.parent == record.name.parent]
        excess = sum(len(r.tag_seq) for r in region) - self._config.max_tags_per_location
        if excess <= 0:
            return
        candidates = sorted(
            ((r.tag_seq[tag], r, tag) for r in region for tag in reconcile.zero_percent_tags(r)),
            key=lambda item: item[0],
        )
        for _, owner, tag in candidates[:excess]:
            reconcile.drop_tag(owner, tag, now)
            if owner is not record:
                self._route(owner)

    def _check_active_limit(
        self, record: ServiceRecord, step: reconcile.Succeed, now: datetime
    ) -> reconcile.Succeed | reconcile.Fail:
        """Cloud Run's cap on serving revisions per project+region (lock held)."""
        others = sum(
            len(reconcile.active_revisions(r))
            for r in self._services.values()
            if r is not record and r.name.parent == record.name.parent
        )
        return reconcile.check_active_limit(record, step, others, self._config.max_serving_revisions_per_location, now)

    def _create_revision(
        self, record: ServiceRecord, revision_id: str, template: run_v2.RevisionTemplate, now: datetime
    ) -> str:
        full = record.name.revision(revision_id)
        svc = record.service
        revision = run_v2.Revision(
            name=full,
            uid=str(uuid.uuid4()),
            generation=1,
            create_time=now,
            update_time=now,
            launch_stage=svc.launch_stage,
            service=record.name.full,
            reconciling=True,
            creator=self._config.caller,
            etag=reconcile.new_etag(),
            log_uri=(
                f"https://console.cloud.google.com/logs/viewer?project={record.name.project}"
                f"&resource=cloud_run_revision/service_name/{record.name.service_id}/revision_name/{revision_id}"
            ),
        )
        rev_pb, tpl_pb = run_v2.Revision.pb(revision), run_v2.RevisionTemplate.pb(template)
        for field in _TEMPLATE_TO_REVISION:
            desc = tpl_pb.DESCRIPTOR.fields_by_name[field]
            if desc.is_repeated:
                getattr(rev_pb, field).MergeFrom(getattr(tpl_pb, field))
            elif desc.has_presence and not tpl_pb.HasField(field):
                continue
            elif desc.message_type is not None:
                getattr(rev_pb, field).CopyFrom(getattr(tpl_pb, field))
            else:
                setattr(rev_pb, field, getattr(tpl_pb, field))
        rev_pb.labels.update(tpl_pb.labels)
        rev_pb.annotations.update(tpl_pb.annotations)
        revision.conditions = [condition(READY, State.CONDITION_RECONCILING, now, "Deploying revision.")]
        rrec = RevisionRecord(revision=revision, template=clone(template), seq=self._next_seq())
        record.revisions[revision_id] = rrec
        launch = self._launch_for(record, rrec)
        failure = self._control.take_revision_failure(launch.container.image)
        if failure is not None:
            self._effects.submit(partial(self.revision_failed, full, failure[0], failure[1]))
        else:
            self._effects.submit(partial(self._launch, launch))
        return full

    def _launch(self, launch: RevisionLaunch) -> None:
        try:
            self._executor.launch(launch)
        except Exception as exc:  # the executor could not even start it: the revision fails
            self.revision_failed(launch.revision, "INTERNAL", f"The revision could not be started: {exc}")

    @staticmethod
    def _launch_for(record: ServiceRecord, rrec: RevisionRecord) -> RevisionLaunch:
        template = rrec.template
        container = ingress_container(template)
        port = container.ports[0].container_port if container.ports else 8080
        env = tuple((e.name, e.value) for e in container.env if not run_v2.EnvVar.pb(e).HasField("value_source"))
        startup = 240.0
        probe_pb = run_v2.Container.pb(container)
        if probe_pb.HasField("startup_probe"):
            probe = container.startup_probe
            startup = float(
                probe.initial_delay_seconds + max(probe.failure_threshold or 3, 1) * (probe.period_seconds or 10)
            )
        return RevisionLaunch(
            service=record.name.full,
            service_id=record.name.service_id,
            revision=str(rrec.revision.name),
            revision_id=rrec.id,
            container=ContainerSpec(
                image=container.image,
                command=tuple(container.command),
                args=tuple(container.args),
                env=env,
                port=port or 8080,
            ),
            startup_timeout_s=startup,
            labels=tuple(sorted(template.labels.items())),
        )

    def _enforce_revision_limit(self, record: ServiceRecord) -> None:
        """Cloud Run keeps at most N revisions per service, deleting the oldest retired ones."""
        excess = len(record.revisions) - self._config.max_revisions_per_service
        if excess <= 0:
            return
        keep = reconcile.serving_revisions(record)
        for rrec in sorted(record.revisions.values(), key=lambda r: r.seq):
            if excess <= 0:
                break
            if rrec.id in keep:
                continue
            del record.revisions[rrec.id]
            self._effects.submit(partial(self._executor.stop_revision, str(rrec.revision.name)))
            excess -= 1

    # -- executor events ------------------------------------------------------------------------
    def revision_ready(self, revision: str) -> None:
        self._settle(revision, Phase.READY, "", "")

    def revision_failed(self, revision: str, reason: str, message: str) -> None:
        self._settle(revision, Phase.FAILED, reason, message)

    def _settle(self, revision: str, phase: Phase, reason: str, message: str) -> None:
        parsed = parse_revision(revision)
        if parsed is None:
            return
        with self._cond:
            record = self._services.get(parsed[0].full)
            rrec = record.revisions.get(parsed[1]) if record else None
            if record is None or rrec is None:
                return  # deleted meanwhile
            if revision in self._relaunched:
                self._resettle(record, rrec, phase, reason, message)
            elif rrec.phase is not Phase.PENDING:
                return  # a late duplicate report
            else:
                reconcile.revision_settled(rrec, phase, _now(), reason, message)
                self._converge(record)
            try:
                self._commit()
            except OSError:  # no caller to tell: the next successful write catches up
                log.exception("could not save the emulator state")
            self._cond.notify_all()

    def _resettle(self, record: ServiceRecord, rrec: RevisionRecord, phase: Phase, reason: str, message: str) -> None:
        """A restored ready revision is up again (or is not); its service's routes follow
        once every revision they name has settled. The service status is not recomputed."""
        self._relaunched.discard(str(rrec.revision.name))
        if phase is Phase.FAILED:
            reconcile.revision_settled(rrec, phase, _now(), reason, message)
        split, tags = reconcile.resolve_routes(record)
        routed = {rev for rev, _ in split} | set(tags.values())
        if record.service.latest_ready_revision and not routed & self._relaunched:
            self._route(record)

    # -- revisions --------------------------------------------------------------------------------
    def get_revision(self, req: run_v2.GetRevisionRequest) -> run_v2.Revision:
        with self._lock:
            return clone(self._revision_record(req.name)[1].revision)

    def list_revisions(self, req: run_v2.ListRevisionsRequest) -> run_v2.ListRevisionsResponse:
        parsed = parse_service(req.parent)
        if parsed is None:
            raise invalid([Violation("parent", "must be projects/{p}/locations/{l}/services/{s}")])
        with self._lock:
            if parsed.service_id != "-" and parsed.location != "-":
                records = [self._record(parsed)]
            else:
                records = [
                    r
                    for r in self._services.values()
                    if r.name.project == parsed.project
                    and parsed.location in ("-", r.name.location)
                    and parsed.service_id in ("-", r.name.service_id)
                ]
            revisions = sorted((rr for r in records for rr in r.revisions.values()), key=lambda rr: rr.seq)
            page, token = _page(revisions, lambda rr: rr.seq, req.page_size, req.page_token)
            return run_v2.ListRevisionsResponse(revisions=[clone(rr.revision) for rr in page], next_page_token=token)

    def delete_revision(self, req: run_v2.DeleteRevisionRequest) -> operations_pb2.Operation:
        with self._cond:
            record, rrec = self._revision_record(req.name)
            if rrec.id in reconcile.serving_revisions(record):
                # The message Cloud Run gives (observed); only retired revisions can be deleted.
                raise failed_precondition(
                    f'Revision "{rrec.id}" cannot be directly deleted because it is actively serving.'
                )
            if req.etag and req.etag != rrec.revision.etag:
                raise aborted(f"The etag '{req.etag}' does not match the current etag of '{req.name}'.")
            gone = clone(rrec.revision)
            gone.delete_time = _now()
            if req.validate_only:
                return self._finished_op(record.name.parent, req.name, run_v2.Revision.pb(gone), 0)
            failed = self._injected_operation_failure(record.name.parent, req.name, run_v2.Revision.pb(rrec.revision))
            if failed is not None:
                return failed
            op = self._ops.create(record.name.parent, req.name, run_v2.Revision.pb(gone), self._control.polls)
            self._ops.succeed(op, run_v2.Revision.pb(gone))
            del record.revisions[rrec.id]
            self._effects.submit(partial(self._executor.stop_revision, req.name))
            self._commit()
            self._cond.notify_all()
            return op.to_pb()

    # -- operations -------------------------------------------------------------------------------
    def get_operation(self, req: operations_pb2.GetOperationRequest) -> operations_pb2.Operation:
        with self._lock:
            return self._poll(self._ops.get(req.name))

    def _poll(self, op: OperationRecord) -> operations_pb2.Operation:
        """Answer a poll (lock held); a poll that counts down `operation_polls` is persisted."""
        before = op.polls_left
        answer = op.to_pb(count_poll=True)
        if op.polls_left != before:
            self._commit()
        return answer

    def list_operations(self, req: operations_pb2.ListOperationsRequest) -> operations_pb2.ListOperationsResponse:
        with self._lock:
            page, token = self._ops.list(req.name, req.page_size, req.page_token)
            return operations_pb2.ListOperationsResponse(operations=[op.to_pb() for op in page], next_page_token=token)

    def delete_operation(self, req: operations_pb2.DeleteOperationRequest) -> empty_pb2.Empty:
        with self._lock:
            self._ops.delete(req.name)
            self._commit()
        return empty_pb2.Empty()

    def wait_operation(self, req: operations_pb2.WaitOperationRequest) -> operations_pb2.Operation:
        timeout = WAIT_OPERATION_MAX_S
        if req.HasField("timeout"):
            timeout = min(timeout, req.timeout.seconds + req.timeout.nanos / 1e9)
        with self._cond:
            op = self._ops.get(req.name)
            self._cond.wait_for(lambda: op.done or self._closing, timeout)
            return self._poll(op)

    # -- IAM --------------------------------------------------------------------------------------
    def get_iam_policy(self, req: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        name = self._service_name(req.resource, "resource")
        if req.options.requested_policy_version not in (0, 1, 3):
            raise invalid([Violation("options.requested_policy_version", "must be 0, 1 or 3")])
        with self._lock:
            self._record(name)
            policy = self._policies.get(name.full)
            if policy is None:  # the first read fixes the empty policy's etag
                policy = self._policies[name.full] = iam.empty_policy()
                self._commit()
            return self._copy_policy(policy)

    def set_iam_policy(self, req: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        name = self._service_name(req.resource, "resource")
        with self._lock:
            self._record(name)
            current = self._policies.setdefault(name.full, iam.empty_policy())
            stored = iam.apply_set(current, req.policy, self._config.public_members_blocked)
            self._policies[name.full] = stored
            self._commit()
            return self._copy_policy(stored)

    def test_iam_permissions(
        self, req: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        name = self._service_name(req.resource, "resource")
        with self._lock:
            self._record(name)
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=iam.granted_permissions(list(req.permissions)))

    # -- helpers ----------------------------------------------------------------------------------
    def _normalise(self, service: run_v2.Service, name: ServiceName, defaults: bool = True) -> run_v2.Service:
        """The request's spec: output-only fields dropped, name set, template defaulted."""
        spec = clone(service)
        pb = run_v2.Service.pb(spec)
        for field in SERVICE_OUTPUT_FIELDS:
            pb.ClearField(field)
        spec.name = name.full
        if defaults and self._config.server_defaults and pb.HasField("template"):
            apply_template_defaults(spec.template)
        return spec

    def _urls(self, name: ServiceName, spec: run_v2.Service) -> dict[str, str]:
        """Service and tag URLs, asked of the executor before any lock is taken."""
        urls = {"": self._executor.service_url(name.full, name.service_id)}
        for target in spec.traffic:
            if target.tag:
                urls[target.tag] = self._executor.tag_url(name.full, name.service_id, target.tag)
        return urls

    @staticmethod
    def _mask_paths(req: run_v2.UpdateServiceRequest) -> set[str] | None:
        """Top-level Service fields an update_mask names, or None for a full replace."""
        pb = run_v2.UpdateServiceRequest.pb(req)
        if not pb.HasField("update_mask") or not pb.update_mask.paths:
            return None
        fields: set[str] = set()
        bad: list[Violation] = []
        for i, path in enumerate(pb.update_mask.paths):
            if path == "*":
                return None
            top = _CAMEL.sub(lambda m: "_" + m.group(1).lower(), path.split(".", 1)[0])
            if top in _SERVICE_INPUT_FIELDS:
                fields.add(top)
            elif top not in SERVICE_OUTPUT_FIELDS and top != "name":
                bad.append(Violation(f"update_mask.paths[{i}]", f"unknown Service field {path!r}"))
        if bad:
            raise invalid(bad)
        return fields

    @staticmethod
    def _merge(current: run_v2.Service, request: run_v2.Service, paths: set[str] | None) -> run_v2.Service:
        """The spec an update asks for: the request, or the current spec with masked fields replaced."""
        if paths is None:
            return request
        merged = spec_of(current)
        mask = field_mask_pb2.FieldMask(paths=sorted(paths))
        mask.MergeMessage(
            run_v2.Service.pb(request),
            run_v2.Service.pb(merged),
            replace_message_field=True,
            replace_repeated_field=True,
        )
        return merged

    @staticmethod
    def _copy_spec(spec: run_v2.Service, target: run_v2.Service) -> None:
        """Replace every client-settable field of `target` with `spec`'s."""
        src, dst = run_v2.Service.pb(spec), run_v2.Service.pb(target)
        for field in _SERVICE_INPUT_FIELDS:
            dst.ClearField(field)
        mask = field_mask_pb2.FieldMask(paths=sorted(_SERVICE_INPUT_FIELDS))
        mask.MergeMessage(src, dst, replace_message_field=True, replace_repeated_field=True)

    def _check_service_quota(self, name: ServiceName) -> None:
        in_location = sum(1 for r in self._services.values() if r.name.parent == name.parent)
        if in_location >= self._config.max_services_per_location:
            raise ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Quota exceeded: at most {self._config.max_services_per_location} services per region.",
            )

    @staticmethod
    def _service_name(value: str, field: str) -> ServiceName:
        name = parse_service(value)
        if name is None:
            raise invalid([Violation(field, "must be projects/{project}/locations/{location}/services/{service}")])
        return name

    def _record(self, name: ServiceName) -> ServiceRecord:
        record = self._services.get(name.full)
        if record is None:
            raise not_found(f"Resource '{name.full}' was not found.")
        return record

    def _revision_record(self, value: str) -> tuple[ServiceRecord, RevisionRecord]:
        parsed = parse_revision(value)
        if parsed is None:
            raise invalid([Violation("name", "must be projects/{p}/locations/{l}/services/{s}/revisions/{r}")])
        record = self._services.get(parsed[0].full)
        rrec = record.revisions.get(parsed[1]) if record else None
        if record is None or rrec is None:
            raise not_found(f"Resource '{value}' was not found.")
        return record, rrec
