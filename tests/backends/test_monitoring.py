"""The Cloud Monitoring metrics source, driven through the real `google-cloud-monitoring` async
client against a local MetricService that answers ListTimeSeries like Cloud Monitoring does.

Cloud Monitoring itself cannot be reached here; what is checked is everything on our side of
the wire: the queries sent (filter, window, alignment), how series and distributions are
combined into one window's figures, and how failures become our error types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import google.cloud.monitoring_v3 as monitoring_v3
import grpc
import pytest
from google.api import distribution_pb2
from google.auth.credentials import AnonymousCredentials
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcAsyncIOTransport

from tfms.backends.errors import Permanent, Transient
from tfms.backends.monitoring import REQUEST_COUNT, REQUEST_LATENCIES, CloudMonitoringMetrics

SERVICE = "projects/p/locations/us-central1/services/fraud"
REVISION = f"{SERVICE}/revisions/fraud-00002"


@dataclass
class FakeMetricService:
    """ListTimeSeries over canned series per metric type; records every request."""

    series: dict[str, list[monitoring_v3.TimeSeries]] = field(default_factory=dict)
    requests: list[monitoring_v3.ListTimeSeriesRequest] = field(default_factory=list)
    fail: grpc.StatusCode | None = None

    def list_time_series(self, request: monitoring_v3.ListTimeSeriesRequest,
                         context: grpc.ServicerContext) -> monitoring_v3.ListTimeSeriesResponse:
        self.requests.append(request)
        if self.fail is not None:
            context.abort(self.fail, f"injected {self.fail.name}")
        metric = request.filter.split('"')[1]
        return monitoring_v3.ListTimeSeriesResponse(time_series=self.series.get(metric, []))


@pytest.fixture
def fake() -> Any:
    service = FakeMetricService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(
        service.list_time_series,
        request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
        response_serializer=monitoring_v3.ListTimeSeriesResponse.serialize,
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "google.monitoring.v3.MetricService", {"ListTimeSeries": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    service.address = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield service
    server.stop(None)


@pytest.fixture
async def metrics(fake: FakeMetricService) -> AsyncIterator[CloudMonitoringMetrics]:
    channel = grpc.aio.insecure_channel(fake.address)  # type: ignore[attr-defined]
    transport = MetricServiceGrpcAsyncIOTransport(channel=channel, credentials=AnonymousCredentials())
    source = CloudMonitoringMetrics(client=monitoring_v3.MetricServiceAsyncClient(transport=transport))
    yield source
    await source.close()


def _count(response_class: str, *values: int) -> monitoring_v3.TimeSeries:
    return monitoring_v3.TimeSeries(
        metric={"type": REQUEST_COUNT, "labels": {"response_code_class": response_class}},
        points=[monitoring_v3.Point(value=monitoring_v3.TypedValue(int64_value=v)) for v in values],
    )


def _latencies(bounds: list[float], counts: list[int]) -> monitoring_v3.TimeSeries:
    dist = distribution_pb2.Distribution(
        count=sum(counts), mean=1.0, bucket_counts=counts,
        bucket_options=distribution_pb2.Distribution.BucketOptions(
            explicit_buckets=distribution_pb2.Distribution.BucketOptions.Explicit(bounds=bounds)))
    return monitoring_v3.TimeSeries(points=[monitoring_v3.Point(value=monitoring_v3.TypedValue(
        distribution_value=dist))])


async def test_window_combines_classes_and_distributions(fake: FakeMetricService,
                                                         metrics: CloudMonitoringMetrics) -> None:
    fake.series[REQUEST_COUNT] = [_count("2xx", 60, 35), _count("5xx", 4, 1), _count("4xx", 0)]
    # Two series (two instances' worth) merged bucket by bucket: 100 requests in
    # (10,20]: 50, (20,50]: 40, (50,100]: 9, (100,1000]: 1.
    fake.series[REQUEST_LATENCIES] = [_latencies([10, 20, 50, 100, 1000], [0, 30, 20, 9, 0, 0]),
                                      _latencies([10, 20, 50, 100, 1000], [0, 20, 20, 0, 1, 0])]
    stats = await metrics.window(SERVICE, REVISION, 1_000.0, 1_120.0)
    assert (stats.requests, stats.errors) == (100, 5)
    assert stats.p50_ms == pytest.approx(20.0)  # the 50th request ends the (10, 20] bucket
    assert stats.p99_ms == pytest.approx(100.0)  # the 99th ends the (50, 100] bucket
    count_query, latency_query = fake.requests
    assert count_query.name == "projects/p"
    assert count_query.filter == (
        'metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision"'
        ' AND resource.labels.location = "us-central1" AND resource.labels.service_name = "fraud"'
        ' AND resource.labels.revision_name = "fraud-00002"')
    assert (count_query.interval.start_time.timestamp(), count_query.interval.end_time.timestamp()) == (1000, 1120)
    assert count_query.aggregation.alignment_period.total_seconds() == 120
    assert count_query.aggregation.per_series_aligner == monitoring_v3.Aggregation.Aligner.ALIGN_DELTA
    assert list(count_query.aggregation.group_by_fields) == ["metric.labels.response_code_class"]
    assert latency_query.filter.startswith('metric.type = "run.googleapis.com/request_latencies"')


async def test_short_windows_align_over_a_minute_and_no_traffic_skips_latencies(
        fake: FakeMetricService, metrics: CloudMonitoringMetrics) -> None:
    stats = await metrics.window(SERVICE, REVISION, 1_000.0, 1_010.0)
    assert (stats.requests, stats.errors, stats.p99_ms) == (0, 0, None)
    (query,) = fake.requests  # nothing served: no latency query
    assert query.aggregation.alignment_period.total_seconds() == 60


@pytest.mark.parametrize(("code", "error", "text"), [
    (grpc.StatusCode.PERMISSION_DENIED, Permanent, "roles/monitoring.viewer"),
    (grpc.StatusCode.UNAVAILABLE, Transient, "injected UNAVAILABLE"),
    (grpc.StatusCode.INVALID_ARGUMENT, Permanent, "injected INVALID_ARGUMENT"),
])
async def test_failures_become_our_errors(fake: FakeMetricService, metrics: CloudMonitoringMetrics,
                                          code: grpc.StatusCode, error: type[Exception], text: str) -> None:
    fake.fail = code
    with pytest.raises(error, match=text):
        await metrics.window(SERVICE, REVISION, 1_000.0, 1_060.0)
    assert len(fake.requests) == 1  # not retried here: the reconciler owns backoff


@pytest.mark.parametrize(("revision", "start", "end"), [
    ("projects/p/locations/us-central1/services/other/revisions/x", 0.0, 60.0),
    ("fraud-00002", 0.0, 60.0),
    (REVISION, 60.0, 60.0),
])
async def test_bad_queries_are_refused_before_any_call(fake: FakeMetricService, metrics: CloudMonitoringMetrics,
                                                       revision: str, start: float, end: float) -> None:
    with pytest.raises(Permanent):
        await metrics.window(SERVICE, revision, start, end)
    assert fake.requests == []

