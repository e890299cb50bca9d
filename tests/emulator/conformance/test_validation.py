"""cloud-run-v2.md, "Service fields", "RevisionTemplate" and the limits table: request validation.

Each case names the reference line it follows; the error is INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import run_v2

from tests.emulator.emulator_testkit import IMAGE, PARENT, Api, template, violated_fields

T = "service.template"
C0 = f"{T}.containers[0]"


def _container(**fields: Any) -> run_v2.RevisionTemplate:
    return run_v2.RevisionTemplate(containers=[run_v2.Container(image=IMAGE, **fields)])


def _limits(cpu: str, memory: str | None = None, cpu_idle: bool = True, **tpl: Any) -> run_v2.RevisionTemplate:
    limits = {"cpu": cpu} | ({"memory": memory} if memory else {})
    resources = run_v2.ResourceRequirements(limits=limits, cpu_idle=cpu_idle)
    return run_v2.RevisionTemplate(containers=[run_v2.Container(image=IMAGE, resources=resources)], **tpl)


def _probe(kind: str, **fields: Any) -> run_v2.RevisionTemplate:
    probe = run_v2.Probe(tcp_socket=run_v2.TCPSocketAction(port=8080), **fields)
    return _container(**{kind: probe})


REJECTED: list[tuple[str, run_v2.Service, set[str]]] = [
    # "`template` (required)"
    ("template required", run_v2.Service(), {T}),
    # "`Container`: ... `image` (required)"
    ("image required", run_v2.Service(template=run_v2.RevisionTemplate(containers=[run_v2.Container()])),
     {f"{C0}.image"}),
    ("a container", run_v2.Service(template=run_v2.RevisionTemplate()), {f"{T}.containers"}),
    # "`description` (≤512 chars)"
    ("description", run_v2.Service(template=template(), description="x" * 513), {"service.description"}),
    # "v2 **rejects** keys in the `run.googleapis.com`, `cloud.googleapis.com`, `serving.knative.dev`,
    # `autoscaling.knative.dev` namespaces" (service labels and annotations; template: "same v2 restriction")
    ("run annotation", run_v2.Service(template=template(), annotations={"run.googleapis.com/ingress": "all"}),
     {"service.annotations['run.googleapis.com/ingress']"}),
    ("cloud label", run_v2.Service(template=template(), labels={"cloud.googleapis.com/location": "x"}),
     {"service.labels['cloud.googleapis.com/location']"}),
    ("serving label", run_v2.Service(template=template(), labels={"serving.knative.dev/route": "x"}),
     {"service.labels['serving.knative.dev/route']"}),
    ("autoscaling annotation", run_v2.Service(template=template(), annotations={"autoscaling.knative.dev/x": "1"}),
     {"service.annotations['autoscaling.knative.dev/x']"}),
    ("template annotation",
     run_v2.Service(template=template(annotations={"autoscaling.knative.dev/maxScale": "3"})),
     {f"{T}.annotations['autoscaling.knative.dev/maxScale']"}),
    ("template label", run_v2.Service(template=template(labels={"serving.knative.dev/service": "x"})),
     {f"{T}.labels['serving.knative.dev/service']"}),
    # "`ports[]` (**only one port**; `name` http1|h2c ...)"
    ("one port", run_v2.Service(template=_container(ports=[run_v2.ContainerPort(container_port=8080),
                                                          run_v2.ContainerPort(container_port=8501)])),
     {f"{C0}.ports"}),
    ("port name", run_v2.Service(template=_container(ports=[run_v2.ContainerPort(name="grpc")])),
     {f"{C0}.ports[0].name"}),
    # "`resources{limits (only cpu|memory|nvidia.com/gpu) ...}`"
    ("limit keys", run_v2.Service(template=_container(
        resources=run_v2.ResourceRequirements(limits={"ephemeral-storage": "1Gi"}))),
     {f"{C0}.resources.limits['ephemeral-storage']"}),
    # "Env | a value is ≤32 KiB"
    ("env value", run_v2.Service(template=_container(env=[run_v2.EnvVar(name="BIG", value="x" * (32 * 1024 + 1))])),
     {f"{C0}.env[0].value"}),
    # "Concurrency | `max_instance_request_concurrency` ≤ **1000**"
    ("concurrency", run_v2.Service(template=template(max_instance_request_concurrency=1001)),
     {f"{T}.max_instance_request_concurrency"}),
    # "Request timeout | default 300 s, **max 3600 s**"
    ("timeout", run_v2.Service(template=template(timeout={"seconds": 3601})), {f"{T}.timeout"}),
    # CPU / memory: "0.08-<1 vCPU (steps of 0.001) ... 1 vCPU ≤4 GiB; 2 ≤8 GiB; 4: 2-16 GiB; 6: 4-24 GiB; 8: 4-32 GiB"
    ("cpu minimum", run_v2.Service(template=_limits("0.05", max_instance_request_concurrency=1)),
     {f"{C0}.resources.limits['cpu']"}),
    ("cpu steps", run_v2.Service(template=_limits("0.0805", max_instance_request_concurrency=1)),
     {f"{C0}.resources.limits['cpu']"}),
    ("cpu values", run_v2.Service(template=_limits("3", "4Gi")), {f"{C0}.resources.limits['cpu']"}),
    ("512Mi below 0.5", run_v2.Service(template=_limits("0.25", "1Gi", max_instance_request_concurrency=1)),
     {f"{C0}.resources.limits['memory']"}),
    ("1Gi at 0.5", run_v2.Service(template=_limits("0.5", "2Gi", max_instance_request_concurrency=1)),
     {f"{C0}.resources.limits['memory']"}),
    ("4Gi at 1", run_v2.Service(template=_limits("1", "5Gi")), {f"{C0}.resources.limits['memory']"}),
    ("8Gi at 2", run_v2.Service(template=_limits("2", "9Gi")), {f"{C0}.resources.limits['memory']"}),
    ("2Gi minimum at 4", run_v2.Service(template=_limits("4", "1Gi")), {f"{C0}.resources.limits['memory']"}),
    ("16Gi at 4", run_v2.Service(template=_limits("4", "17Gi")), {f"{C0}.resources.limits['memory']"}),
    ("4Gi minimum at 8", run_v2.Service(template=_limits("8", "2Gi")), {f"{C0}.resources.limits['memory']"}),
    # "CPU<1 also requires concurrency=1, request-based billing and gen1"
    ("concurrency 1 below 1 vCPU", run_v2.Service(template=_limits("0.5", max_instance_request_concurrency=2)),
     {f"{T}.max_instance_request_concurrency"}),
    ("request billing below 1 vCPU",
     run_v2.Service(template=_limits("0.5", cpu_idle=False, max_instance_request_concurrency=1)),
     {f"{C0}.resources.cpu_idle"}),
    ("gen1 below 1 vCPU", run_v2.Service(template=_limits(
        "0.5", max_instance_request_concurrency=1,
        execution_environment=run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2)),
     {f"{T}.execution_environment"}),
    # "Probes | startup `initial_delay_seconds` and `period_seconds` ≤240; liveness ≤3600;
    # `timeout_seconds` 1-3600 and less than the period"
    ("startup delay", run_v2.Service(template=_probe("startup_probe", initial_delay_seconds=241)),
     {f"{C0}.startup_probe.initial_delay_seconds"}),
    ("startup period", run_v2.Service(template=_probe("startup_probe", period_seconds=241)),
     {f"{C0}.startup_probe.period_seconds"}),
    ("liveness period", run_v2.Service(template=_probe("liveness_probe", period_seconds=3601)),
     {f"{C0}.liveness_probe.period_seconds"}),
    ("probe timeout", run_v2.Service(template=_probe("liveness_probe", timeout_seconds=3601, period_seconds=3600)),
     {f"{C0}.liveness_probe.timeout_seconds"}),
    ("timeout below period", run_v2.Service(template=_probe("startup_probe", timeout_seconds=10, period_seconds=10)),
     {f"{C0}.startup_probe.timeout_seconds"}),
    # "Instances | ... min ≥0"
    ("min instances", run_v2.Service(template=template(), scaling={"min_instance_count": -1}),
     {"service.scaling.min_instance_count"}),
]


@pytest.mark.parametrize(("rule", "service", "fields"), REJECTED, ids=[r[0] for r in REJECTED])
def test_documented_rule_rejects(cr: Api, rule: str, service: run_v2.Service, fields: set[str]) -> None:
    """Each documented limit, sent one at a time: INVALID_ARGUMENT naming exactly that field."""
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.services.create_service(parent=PARENT, service_id="svc", service=service)
    assert violated_fields(err.value) == fields
    for field in fields:
        assert field in err.value.message


ACCEPTED: list[tuple[str, run_v2.RevisionTemplate]] = [
    ("0.08 vCPU with 512Mi", _limits("0.08", "512Mi", max_instance_request_concurrency=1)),
    ("0.5 vCPU with 1Gi", _limits("0.5", "1Gi", max_instance_request_concurrency=1)),
    ("1 vCPU with 4Gi", _limits("1", "4Gi")),
    ("6 vCPU with 24Gi", _limits("6", "24Gi")),
    ("8 vCPU with 32Gi", _limits("8", "32Gi")),
    ("1000 concurrency, 3600 s", template(max_instance_request_concurrency=1000, timeout={"seconds": 3600})),
    ("startup probe at 240 s", _probe("startup_probe", initial_delay_seconds=240, period_seconds=240,
                                      timeout_seconds=239)),
]


@pytest.mark.parametrize(("rule", "tpl"), ACCEPTED, ids=[r[0] for r in ACCEPTED])
def test_documented_limits_are_inclusive(cr: Api, rule: str, tpl: run_v2.RevisionTemplate) -> None:
    """The edges of the same limits are accepted (the emulator must not refuse what Cloud Run takes)."""
    assert cr.create_ready("svc", tpl).terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED


def test_gpu_minimums(cr: Api) -> None:
    """"GPU (L4) | `node_selector.accelerator: nvidia-l4`; `limits["nvidia.com/gpu"]="1"` (the only
    allowed value); **≥4 vCPU and ≥16 GiB**; CPU always allocated ... (`cpu_idle=false`)"."""
    def gpu(cpu: str, memory: str, count: str = "1", cpu_idle: bool = False) -> run_v2.RevisionTemplate:
        limits = {"cpu": cpu, "memory": memory, "nvidia.com/gpu": count}
        resources = run_v2.ResourceRequirements(limits=limits, cpu_idle=cpu_idle)
        container = run_v2.Container(image="tensorflow/serving:2.19.0-gpu", resources=resources)
        return run_v2.RevisionTemplate(containers=[container], node_selector={"accelerator": "nvidia-l4"})

    with cr.raises("INVALID_ARGUMENT") as err:
        cr.create("gpu", gpu("2", "8Gi", count="2", cpu_idle=True))
    assert violated_fields(err.value) == {
        f"{C0}.resources.limits['cpu']",
        f"{C0}.resources.limits['memory']",
        f"{C0}.resources.limits['nvidia.com/gpu']",
        f"{C0}.resources.cpu_idle",
    }
    no_selector = gpu("4", "16Gi")
    no_selector.node_selector = run_v2.NodeSelector()
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.create("gpu", no_selector)
    assert violated_fields(err.value) == {f"{T}.node_selector.accelerator"}
    assert cr.create_ready("gpu", gpu("4", "16Gi")).template.node_selector.accelerator == "nvidia-l4"


def test_every_violation_at_once(cr: Api) -> None:
    """Not a reference rule but the design's: a request with several problems names them all."""
    service = run_v2.Service(
        description="x" * 513,
        labels={"run.googleapis.com/x": "y"},
        template=template(max_instance_request_concurrency=1001),
    )
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.services.create_service(parent=PARENT, service_id="Bad", service=service)
    assert violated_fields(err.value) == {
        "service_id",
        "service.description",
        "service.labels['run.googleapis.com/x']",
        f"{T}.max_instance_request_concurrency",
    }
