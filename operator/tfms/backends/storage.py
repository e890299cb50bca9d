"""Model files for pre-flight: local directories and Cloud Storage (`google-cloud-storage`).

Both implement `tfms.modelcheck.reader.ModelReader`. Cloud Storage has no directories, so a
"directory" is a prefix: `list_dir` lists with delimiter `/`, `walk` lists everything under
the prefix, and each file carries its object generation (what status records, so a model
replaced in place is visible). Library exceptions never leave this module: they become
`tfms.backends.errors` types, classified for retries like the Cloud Run backend's.

Configuration: `TFMS_STORAGE_ENDPOINT` (or the library's own `STORAGE_EMULATOR_HOST`)
points the client at a fake server with anonymous credentials; otherwise Application
Default Credentials (workload identity on Cloud Run and GKE).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from tfms.backends.errors import BackendError, CredentialsMissing, NotFound, Permanent, Transient
from tfms.modelcheck.reader import FileInfo, Listing, ModelReader

T = TypeVar("T")
ENDPOINT_ENV = "TFMS_STORAGE_ENDPOINT"
RETRY_BUDGET_S = 5.0
MAX_READ_BYTES = 2**31  # protobuf's own limit for one message; larger files are not SavedModels we can parse


def split_gs(path: str) -> tuple[str, str]:
    """`gs://bucket/a/b/` -> (`bucket`, `a/b`)."""
    if not path.startswith("gs://"):
        raise ValueError(f"not a gs:// path: {path}")
    bucket, _, prefix = path[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {path}")
    return bucket, prefix.strip("/")


class LocalReader:
    """A local directory tree (a model for `tfms up`, or a copy of a bucket)."""

    def list_dir(self, path: str) -> Listing:
        root = Path(path)
        if not root.is_dir():
            return Listing()
        dirs: list[str] = []
        files: list[FileInfo] = []
        try:
            for entry in os.scandir(root):
                if entry.is_dir():
                    dirs.append(entry.name)
                elif entry.is_file():
                    files.append(FileInfo(entry.name, entry.stat().st_size))
        except OSError as exc:
            raise _local_error(path, exc) from None
        return Listing(tuple(sorted(dirs)), tuple(sorted(files, key=lambda f: f.path)))

    def walk(self, path: str) -> list[FileInfo]:
        root = Path(path)
        out: list[FileInfo] = []
        try:
            for dirpath, _, names in os.walk(root):
                for name in names:
                    full = Path(dirpath) / name
                    if full.is_file():
                        out.append(FileInfo(full.relative_to(root).as_posix(), full.stat().st_size))
        except OSError as exc:
            raise _local_error(path, exc) from None
        return sorted(out, key=lambda f: f.path)

    def read(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file", "NotFound") from None
        except OSError as exc:
            raise _local_error(path, exc) from None


def _local_error(path: str, exc: OSError) -> BackendError:
    if isinstance(exc, PermissionError):
        return Permanent(f"{path}: permission denied", "PermissionDenied")
    return Permanent(f"{path}: {exc.strerror or exc}", type(exc).__name__)


def translate(exc: Exception, what: str) -> BackendError:
    """Our error for a google-cloud-storage / google-auth / requests exception."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    message = getattr(exc, "message", None) or str(exc)
    code = type(exc).__name__
    if isinstance(exc, gexc.NotFound):
        return NotFound(f"{what}: {message}", code)
    if isinstance(exc, gexc.RetryError):  # our short retry budget ran out on retryable answers
        cause = exc.cause
        return Transient(f"{what}: {getattr(cause, 'message', None) or cause or message}", code)
    if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized)):
        return Permanent(f"{what}: {message} (the identity tfms runs as needs roles/storage.objectViewer on the "
                         "bucket)", code)
    if isinstance(exc, (gexc.ServiceUnavailable, gexc.TooManyRequests, gexc.InternalServerError,
                        gexc.GatewayTimeout, gexc.DeadlineExceeded, gexc.BadGateway)):
        return Transient(f"{what}: {message}", code)
    if isinstance(exc, gexc.GoogleAPICallError):
        return Permanent(f"{what}: {message}", code)
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return CredentialsMissing("no Application Default Credentials found for Cloud Storage; run `gcloud auth "
                                  f"application-default login`, use workload identity, or set {ENDPOINT_ENV}", code)
    if isinstance(exc, auth_exc.GoogleAuthError):
        return Permanent(f"{what}: {message}", code)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or type(exc).__module__.startswith(
            ("requests", "urllib3")):
        return Transient(f"{what}: {exc}", code)
    raise exc


def _call(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except BackendError:
        raise
    except Exception as exc:
        raise translate(exc, what) from None


def make_client(endpoint: str | None = None, env: Mapping[str, str] | None = None) -> Any:
    """A `google.cloud.storage.Client`: anonymous against an endpoint, else with ADC."""
    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    env = os.environ if env is None else env
    endpoint = endpoint or env.get(ENDPOINT_ENV) or None
    if endpoint:
        url = endpoint if "://" in endpoint else f"http://{endpoint}"
        return storage.Client(project="tfms-local", credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                              client_options={"api_endpoint": url})
    return _call("connecting to Cloud Storage", lambda: storage.Client(project=None))


def _retry() -> Any:
    """The library's retry policy with a short budget: the reconciler has its own backoff, and a
    pre-flight check must not hold a pass for the library's default two minutes."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(RETRY_BUDGET_S)


class GcsReader:
    """Objects under gs:// prefixes; the client is made on first use."""

    def __init__(self, client: Any = None, endpoint: str | None = None) -> None:
        self._client = client
        self._endpoint = endpoint

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self._endpoint)
        return self._client

    def _blobs(self, path: str, delimiter: str | None) -> tuple[list[Any], list[str], str]:
        bucket, prefix = split_gs(path)
        prefix = f"{prefix}/" if prefix else ""

        def run() -> tuple[list[Any], list[str]]:
            pages: Iterator[Any] = self.client.list_blobs(bucket, prefix=prefix, delimiter=delimiter,
                                                                   retry=_retry())
            blobs = list(pages)
            return blobs, sorted(getattr(pages, "prefixes", set()) or set())

        blobs, prefixes = _call(f"listing {path}", run)
        return blobs, prefixes, prefix

    def list_dir(self, path: str) -> Listing:
        blobs, prefixes, prefix = self._blobs(path, "/")
        files = [FileInfo(b.name[len(prefix):], int(b.size or 0), str(b.generation or ""))
                 for b in blobs if b.name != prefix and not b.name.endswith("/")]
        dirs = [p[len(prefix):].rstrip("/") for p in prefixes]
        return Listing(tuple(sorted(d for d in dirs if d)), tuple(sorted(files, key=lambda f: f.path)))

    def walk(self, path: str) -> list[FileInfo]:
        blobs, _, prefix = self._blobs(path, None)
        return sorted((FileInfo(b.name[len(prefix):], int(b.size or 0), str(b.generation or ""))
                       for b in blobs if not b.name.endswith("/")), key=lambda f: f.path)

    def read(self, path: str) -> bytes:
        bucket, name = split_gs(path)

        def run() -> bytes:
            data: bytes = self.client.bucket(bucket).blob(name).download_as_bytes(retry=_retry())
            return data

        return _call(f"reading {path}", run)


def reader_for(base_path: str, *, endpoint: str | None = None, gcs_client: Any = None) -> ModelReader:
    """The reader for a spec's basePath: gs:// through Cloud Storage, anything else locally."""
    if base_path.startswith("gs://"):
        return GcsReader(gcs_client, endpoint)
    return LocalReader()


__all__ = ["ENDPOINT_ENV", "GcsReader", "LocalReader", "make_client", "reader_for", "split_gs", "translate"]
