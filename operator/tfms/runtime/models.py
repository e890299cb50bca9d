"""Which versions of which models are loaded, and the in-process request API.

`ModelManager` plays the part of TF Serving's ServerCore: it applies version policies,
loads versions (blocking until every configured model is AVAILABLE), polls for new
version directories, resolves `Latest`/`Specific`/label requests, and answers status,
metadata and predict calls. The HTTP server and benchmarks call the same methods.
tensorflow is imported only when the default loader is first used.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tfms.runtime import predict as predict_mod
from tfms.runtime.classify import classify_or_regress
from tfms.runtime.config import ModelConfig
from tfms.runtime.errors import Code, ServingError, http_status, invalid, not_found
from tfms.runtime.metrics import Metrics
from tfms.runtime.signature import metadata_response
from tfms.runtime.versions import list_versions, select_versions

log = logging.getLogger("tfms.runtime")

Loader = Callable[[str], predict_mod.Servable]


class LoadError(RuntimeError):
    """A configured model cannot be served; the server must not start."""


@dataclass
class VersionState:
    version: int
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""
    servable: predict_mod.Servable | None = None


def error_body(message: str) -> bytes:
    """TF Serving's error document (`{ "error": "..." }`)."""
    return ('{ "error": ' + json.dumps(message, ensure_ascii=False) + " }").encode()


def default_loader(
    tags: Sequence[str] = ("serve",), intra_op: int = 0, inter_op: int = 0, warmup: bool = True
) -> Loader:
    """A loader backed by `tfms.runtime.loader.TfServable` (imports tensorflow lazily)."""

    def load(path: str) -> predict_mod.Servable:
        from tfms.runtime.loader import TfServable, session_config

        servable = TfServable(path, tags, session_config(intra_op, inter_op))
        if warmup and servable.has_warmup_file():
            try:
                replayed = servable.replay_warmup()
            except BaseException:
                servable.close()
                raise
            log.info("Finished reading warmup data for model at %s. Number of warmup records replayed: %d",
                     path, replayed)
        return servable

    return load


class ModelManager:
    """Loaded model versions and the REST operations on them (thread-safe)."""

    def __init__(self, loader: Loader | None = None, allow_labels_for_unavailable: bool = False) -> None:
        self._loader = loader or default_loader()
        self._allow_unavailable_labels = allow_labels_for_unavailable
        self._lock = threading.Lock()
        self._configs: list[ModelConfig] = []
        self._versions: dict[str, dict[int, VersionState]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._failed: set[tuple[str, int]] = set()
        self.metrics = Metrics()

    # ---- loading -------------------------------------------------------------------

    def load(
        self,
        configs: Sequence[ModelConfig],
        poll_seconds: float = 1.0,
        stop: threading.Event | None = None,
    ) -> None:
        """Load every configured model and return once each has an AVAILABLE version.

        A model with no version directory yet (or no base path) is waited for, polling
        like TF Serving does; a version that fails to load raises LoadError.
        """
        self._configs = list(configs)
        for cfg in self._configs:
            if "://" in cfg.base_path:
                raise LoadError(
                    f"base_path {cfg.base_path} of model {cfg.name} is not a local directory; the local runtime "
                    "reads models from the local filesystem only (copy or mount the model first)"
                )
            self._versions.setdefault(cfg.name, {})
        pending = list(self._configs)
        warned: dict[str, float] = {}
        while True:
            waiting = []
            for cfg in pending:
                self._reconcile(cfg, fail_fast=True, warned=warned)
                if not self._available(cfg.name):
                    waiting.append(cfg)
            pending = waiting
            if not pending:
                break
            if stop is not None and stop.wait(max(poll_seconds, 0.2)):
                raise LoadError("stopped while waiting for models to load")
            if stop is None:
                time.sleep(max(poll_seconds, 0.2))
        self._apply_labels()

    def _available(self, name: str) -> list[int]:
        return sorted((v for v, s in self._versions.get(name, {}).items() if s.state == "AVAILABLE"), reverse=True)

    def _apply_labels(self) -> None:
        labels: dict[str, dict[str, int]] = {}
        for cfg in self._configs:
            for version in cfg.labels.values():
                if not self._allow_unavailable_labels and version not in self._available(cfg.name):
                    raise LoadError(
                        f"Request to assign label to version {version} of model {cfg.name}, which is not "
                        "currently available for inference"
                    )
            labels[cfg.name] = dict(cfg.labels)
        self._labels = labels

    def _reconcile(self, cfg: ModelConfig, fail_fast: bool, warned: dict[str, float]) -> None:
        """Bring one model's loaded versions in line with its policy and the disk."""
        try:
            on_disk = list_versions(cfg.base_path)
        except OSError as exc:
            self._warn_once(warned, cfg.name, f"File system storage path source: Could not find base path "
                            f"{cfg.base_path} for servable {cfg.name} with error {exc.strerror or exc}")
            return
        aspired = select_versions(on_disk, cfg.policy)
        if not aspired:
            self._warn_once(warned, cfg.name, f"No versions of servable {cfg.name} found under base path "
                            f"{cfg.base_path}. Did you forget to name your leaf directory as a number "
                            "(eg. '/1/')?")
        states = self._versions.setdefault(cfg.name, {})
        for version in aspired:
            current = states.get(version)
            if (current is not None and current.state in ("AVAILABLE", "LOADING")) or (
                cfg.name, version) in self._failed:
                continue
            self._load_version(cfg.name, version, on_disk[version], fail_fast)
        # Availability preserving: unload only after the new versions are up.
        for version, state in list(states.items()):
            if state.state == "AVAILABLE" and version not in aspired:
                self._unload_version(cfg.name, state)

    def _warn_once(self, warned: dict[str, float], key: str, message: str) -> None:
        now = time.monotonic()
        if now - warned.get(key, -1e9) >= 30:
            warned[key] = now
            log.error(message)

    def _load_version(self, name: str, version: int, path: str, fail_fast: bool) -> None:
        state = VersionState(version, "LOADING")
        with self._lock:
            self._versions[name][version] = state
        log.info("Loading servable: {name: %s version: %d} from %s", name, version, path)
        started = time.monotonic()
        try:
            servable = self._loader(path)
        except Exception as exc:
            self.metrics.load_attempt(path, ok=False)
            message = f"Loading servable: {{name: {name} version: {version}}} failed: {type(exc).__name__}: {exc}"
            with self._lock:
                state.state, state.error_code, state.error_message = "END", "UNKNOWN", message
            self._failed.add((name, version))
            if fail_fast:
                raise LoadError(message) from exc
            log.error(message)
            return
        self.metrics.load_attempt(path, ok=True)
        with self._lock:
            state.servable, state.state = servable, "AVAILABLE"
        log.info(
            "Successfully loaded servable version {name: %s version: %d} in %.2fs",
            name, version, time.monotonic() - started,
        )

    def _unload_version(self, name: str, state: VersionState) -> None:
        servable = state.servable
        with self._lock:
            state.state, state.servable = "END", None
        log.info("Unloaded servable version {name: %s version: %d}", name, state.version)
        if servable is not None:
            # In-flight requests hold a reference; give them time before closing the session.
            timer = threading.Timer(5.0, servable.close)
            timer.daemon = True
            timer.start()

    def poll_forever(self, poll_seconds: float, stop: threading.Event) -> None:
        """Pick up new version directories (and drop removed ones) until `stop` is set."""
        warned: dict[str, float] = {}
        while not stop.wait(poll_seconds):
            for cfg in self._configs:
                try:
                    self._reconcile(cfg, fail_fast=False, warned=warned)
                except Exception:  # never let a bad poll kill the server
                    log.exception("Polling model %s failed", cfg.name)

    def close(self) -> None:
        with self._lock:
            states = [s for versions in self._versions.values() for s in versions.values()]
        for s in states:
            if s.servable is not None:
                s.servable.close()
                s.servable, s.state = None, "END"

    # ---- lookups -------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return [c.name for c in self._configs]

    def resolve_label(self, name: str, label: str) -> int:
        version = self._labels.get(name, {}).get(label)
        if version is None:
            raise invalid(f"Unrecognized servable version label: {label}")
        return version

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> predict_mod.Servable:
        """`ServerCore::GetServableHandle` for Latest, Specific or a label."""
        return self.lookup(name, version, label)[1]

    def lookup(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> tuple[int, predict_mod.Servable]:
        """The serving version number and its servable, or TF Serving's NOT_FOUND."""
        if label is not None:
            version = self.resolve_label(name, label)
        with self._lock:
            states = self._versions.get(name, {})
            if version is None:
                loaded = [s for s in states.values() if s.state == "AVAILABLE" and s.servable is not None]
                if not loaded:
                    raise not_found(f"Servable not found for request: Latest({name})")
                state = max(loaded, key=lambda s: s.version)
            else:
                found = states.get(version)
                if found is None or found.state != "AVAILABLE" or found.servable is None:
                    raise not_found(f"Servable not found for request: Specific({name}, {version})")
                state = found
            assert state.servable is not None
            return state.version, state.servable

    # ---- REST operations (raise ServingError) -------------------------------------------

    def status(self, name: str, version: int | None = None, label: str | None = None) -> bytes:
        """`GetModelStatus` as proto3 JSON (versions newest first, int64 as strings)."""
        if label is not None:
            version = self.resolve_label(name, label)
        with self._lock:
            states = dict(self._versions.get(name, {}))
            if version is not None:
                if version not in states:
                    raise not_found(f"Could not find version {version} of model {name}")
                chosen = [states[version]]
            else:
                if not states:
                    raise not_found(f"Could not find any versions of model {name}")
                chosen = [states[v] for v in sorted(states, reverse=True)]
            doc = {
                "model_version_status": [
                    {
                        "version": str(s.version),
                        "state": s.state,
                        "status": {"error_code": s.error_code, "error_message": s.error_message},
                    }
                    for s in chosen
                ]
            }
        return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()

    def metadata(self, name: str, version: int | None = None, label: str | None = None) -> bytes:
        """`GetModelMetadata` (signature_def only) for the requested version."""
        resolved, servable = self.lookup(name, version, label)
        return metadata_response(name, resolved, servable.signatures)

    def predict_or_raise(
        self, body: bytes, name: str, version: int | None = None, label: str | None = None
    ) -> bytes:
        return predict_mod.predict(body, lambda: self.servable(name, version, label))

    def predict(
        self, body: bytes, name: str, version: int | None = None, label: str | None = None
    ) -> tuple[int, bytes]:
        """In-process `:predict`: (HTTP status, response body), never raises."""
        try:
            return 200, self.predict_or_raise(body, name, version, label)
        except ServingError as exc:
            return http_status(exc.code), error_body(exc.message)

    def classify_or_regress(
        self, verb: str, body: bytes, name: str, version: int | None = None, label: str | None = None
    ) -> bytes:
        return classify_or_regress(verb, body, lambda: self.servable(name, version, label))


__all__ = ["Code", "LoadError", "ModelManager", "ServingError", "VersionState", "default_loader", "error_body"]
