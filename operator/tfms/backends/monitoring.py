"""Cloud Run's per-revision request metrics from Cloud Monitoring, for canary analysis on Cloud Run.

Cloud Run's front end writes `run.googleapis.com/request_count` (DELTA INT64, labelled with
`response_code_class`) and `run.googleapis.com/request_latencies` (DELTA DISTRIBUTION, ms)
against the `cloud_run_revision` resource. One `list_time_series` call each, aligned over the
whole window: counts summed per response class (5xx are the errors), latencies summed into one
distribution whose bucket counts give p50 and p99. Percentile aligners would give one value
per series, and percentiles of several series cannot be combined; bucket counts can.

Cloud Run writes these metrics about once a minute and Monitoring aligns over at least 60 s,
so windows shorter than a few minutes are coarse. The client is created on first use (credentials are only needed
then), and tests inject their own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import google.cloud.monitoring_v3 as monitoring_v3
import grpc
from google.api import distribution_pb2
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.protobuf import duration_pb2, timestamp_pb2

from tfms.backends.errors import BackendError, CredentialsMissing, NotFound, Permanent, Transient
from tfms.plan.analysis import WindowStats

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
RESOURCE_TYPE = "cloud_run_revision"
ERROR_CLASS = "5xx"
MIN_ALIGNMENT_S = 60
CLASS_LABEL = "metric.labels.response_code_class"

_REVISION_NAME = re.compile(r"^(projects/([^/]+)/locations/([^/]+)/services/([^/]+))/revisions/([^/]+)$")
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.TooManyRequests,
    gexc.DeadlineExceeded,
    gexc.GatewayTimeout,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.RetryError,
)
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
FULL = monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL


def translate(exc: Exception, what: str) -> BackendError:
    """Our error for a client exception (re-raises what is not a client failure)."""
    message = getattr(exc, "message", None) or str(exc)
    code = type(exc).__name__
    if isinstance(exc, gexc.NotFound):
        return NotFound(f"{what}: {message}", code)
    if isinstance(exc, _TRANSIENT):
        return Transient(f"{what}: {message}", code)
    if isinstance(exc, gexc.PermissionDenied):
        return Permanent(f"{what}: {message} (reading metrics needs roles/monitoring.viewer on the project)", code)
    if isinstance(exc, gexc.GoogleAPICallError):
        return Permanent(f"{what}: {message}", code)
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return CredentialsMissing(
            "no Application Default Credentials found for Cloud Monitoring; run "
            "`gcloud auth application-default login` or use workload identity", code)
    if isinstance(exc, auth_exc.TransportError):
        return Transient(f"{what}: {message}", code)
    if isinstance(exc, auth_exc.RefreshError):
        return Permanent(f"{what}: credentials rejected: {message}", code)
    if isinstance(exc, grpc.RpcError):
        return Transient(f"{what}: {exc}", code)
    raise exc


def _timestamp(unix: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(unix * 1e9))
    return stamp


def revision_filter(metric: str, location: str, service: str, revision: str) -> str:
    """The Monitoring filter selecting one revision's series of `metric`."""
    return (
        f'metric.type = "{metric}" AND resource.type = "{RESOURCE_TYPE}"'
        f' AND resource.labels.location = "{location}"'
        f' AND resource.labels.service_name = "{service}"'
        f' AND resource.labels.revision_name = "{revision}"'
    )


def _number(value: monitoring_v3.TypedValue) -> float:
    kind = monitoring_v3.TypedValue.pb(value).WhichOneof("value")
    if kind == "int64_value":
        return float(value.int64_value)
    if kind == "double_value":
        return float(value.double_value)
    return 0.0


def _bucket_bounds(options: distribution_pb2.Distribution.BucketOptions, index: int) -> tuple[float, float]:
    """[lower, upper) of bucket `index` (0 is the underflow bucket, the last one the overflow)."""
    kind = options.WhichOneof("options")
    if kind == "linear_buckets":
        lin = options.linear_buckets
        lower = -math.inf if index == 0 else lin.offset + lin.width * (index - 1)
        upper = math.inf if index > lin.num_finite_buckets else lin.offset + lin.width * index
    elif kind == "exponential_buckets":
        exp = options.exponential_buckets
        lower = -math.inf if index == 0 else exp.scale * exp.growth_factor ** (index - 1)
        upper = math.inf if index > exp.num_finite_buckets else exp.scale * exp.growth_factor**index
    elif kind == "explicit_buckets":
        bounds = options.explicit_buckets.bounds
        lower = -math.inf if index == 0 else bounds[index - 1]
        upper = math.inf if index >= len(bounds) else bounds[index]
    else:
        lower, upper = -math.inf, math.inf
    return float(lower), float(upper)


class Histogram:
    """Distributions merged bucket by bucket. Percentiles interpolate linearly inside a bucket,
    as Cloud Monitoring's percentile aligners do; latencies are never negative. Distributions
    without bucket counts only tell their mean, used when nothing else is known."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[float, float], int] = {}
        self.count = 0
        self._sum = 0.0

    def add(self, dist: distribution_pb2.Distribution) -> None:
        if dist.count <= 0:
            return
        self.count += dist.count
        self._sum += dist.mean * dist.count
        for index, n in enumerate(dist.bucket_counts):
            if n:
                lower, upper = _bucket_bounds(dist.bucket_options, index)
                key = (max(lower, 0.0), upper)
                self.buckets[key] = self.buckets.get(key, 0) + n

    def percentile(self, q: float) -> float | None:
        if self.count <= 0:
            return None
        total = sum(self.buckets.values())
        if total == 0:
            return self._sum / self.count
        rank = q * total
        seen = 0
        for (lower, upper), n in sorted(self.buckets.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if seen + n >= rank:
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * max(0.0, rank - seen) / n
            seen += n
        return None  # unreachable: rank <= total


class CloudMonitoringMetrics:
    """`MetricsSource` for Cloud Run: Cloud Monitoring's per-revision request metrics.

    `project` is the project whose metrics scope holds the services; None (the default)
    reads each revision's metrics in its own project, named in the revision's full name.
    `client` is a `monitoring_v3.MetricServiceAsyncClient`, made on first use when not given;
    it belongs to the event loop that first uses it. Calls are not retried here (the
    reconciler retries `Transient` with backoff); `timeout_s` bounds each call.
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        client: monitoring_v3.MetricServiceAsyncClient | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.project = project
        self._client = client
        self._timeout = timeout_s

    def _connect(self) -> monitoring_v3.MetricServiceAsyncClient:
        if self._client is None:
            try:
                self._client = monitoring_v3.MetricServiceAsyncClient()
            except Exception as exc:
                raise translate(exc, "connecting to Cloud Monitoring") from exc
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.transport.close()  # type: ignore[no-untyped-call]

    def requests_for(self, service: str, revision: str, start: float, end: float) -> tuple[
        monitoring_v3.ListTimeSeriesRequest, monitoring_v3.ListTimeSeriesRequest
    ]:
        """The request_count and request_latencies queries for one revision's window."""
        m = _REVISION_NAME.match(revision)
        if m is None or m.group(1) != service:
            raise Permanent(f"{revision!r} is not a revision of {service!r} "
                            "(need projects/P/locations/L/services/S/revisions/R)", "INVALID_ARGUMENT")
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            raise Permanent(f"need start < end, got {start} and {end}", "INVALID_ARGUMENT")
        _, project, location, service_id, revision_id = m.groups()
        interval = monitoring_v3.TimeInterval(start_time=_timestamp(start), end_time=_timestamp(end))
        period = duration_pb2.Duration(seconds=max(MIN_ALIGNMENT_S, math.ceil(end - start)))

        def request(metric: str, group_by: Iterable[str]) -> monitoring_v3.ListTimeSeriesRequest:
            return monitoring_v3.ListTimeSeriesRequest(
                name=f"projects/{self.project or project}",
                filter=revision_filter(metric, location, service_id, revision_id),
                interval=interval,
                aggregation=monitoring_v3.Aggregation(
                    alignment_period=period,
                    per_series_aligner=Aligner.ALIGN_DELTA,
                    cross_series_reducer=Reducer.REDUCE_SUM,
                    group_by_fields=list(group_by),
                ),
                view=FULL,
            )

        return request(REQUEST_COUNT, [CLASS_LABEL]), request(REQUEST_LATENCIES, [])

    async def window(self, service: str, revision: str, start: float, end: float) -> WindowStats:
        count_request, latency_request = self.requests_for(service, revision, start, end)
        requests = errors = 0
        for series in await self._list(count_request, f"request count of {revision}"):
            n = round(sum(_number(p.value) for p in series.points))
            requests += n
            if series.metric.labels.get("response_code_class") == ERROR_CLASS:
                errors += n
        if requests == 0:
            return WindowStats(requests=0, errors=0)
        histogram = Histogram()
        for series in await self._list(latency_request, f"request latencies of {revision}"):
            for point in series.points:
                if monitoring_v3.TypedValue.pb(point.value).WhichOneof("value") == "distribution_value":
                    histogram.add(point.value.distribution_value)
        return WindowStats(
            requests=requests, errors=errors, p50_ms=histogram.percentile(0.50), p99_ms=histogram.percentile(0.99)
        )

    async def _list(self, request: monitoring_v3.ListTimeSeriesRequest, what: str) -> list[monitoring_v3.TimeSeries]:
        client = self._connect()
        try:
            pager: Any = await client.list_time_series(request=request, retry=None, timeout=self._timeout)
            return [series async for series in pager]
        except BackendError:
            raise
        except Exception as exc:  # translated, or re-raised by `translate`
            raise translate(exc, what) from exc
