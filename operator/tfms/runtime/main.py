"""`python -m tfms.runtime`: start-up sequence of `tensorflow_model_server`.

Parse flags -> build the model config -> load every model (blocking) -> only then open
the REST port -> serve until SIGTERM/SIGINT. Failures print `Failed to start server.`
to stderr and exit non-zero, like the real binary (which returns -1).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from importlib import metadata
from types import FrameType

from tfms.runtime import portmap
from tfms.runtime.config import (
    ConfigError,
    ModelConfig,
    parse_batching_parameters,
    parse_model_server_config,
    parse_monitoring_config,
    single_model_config,
)
from tfms.runtime.flags import FlagError, Flags, parse_flags, usage
from tfms.runtime.models import LoadError, ModelManager, default_loader
from tfms.runtime.rest import RestApi
from tfms.runtime.server import RestServer, run_until_signalled

log = logging.getLogger("tfms.runtime")
EXIT_FAILURE = 255  # the real server returns -1 from main()


class _Interrupted(BaseException):
    """SIGTERM/SIGINT arrived while models were still loading (a BaseException, so no
    `except Exception` on the way turns it into a load failure)."""


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s tfms.runtime] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _version_text() -> str:
    try:
        tf_version = metadata.version("tensorflow-cpu")
    except metadata.PackageNotFoundError:
        try:
            tf_version = metadata.version("tensorflow")
        except metadata.PackageNotFoundError:
            tf_version = "unknown"
    return f"TensorFlow ModelServer: {tf_version}-tfms-local\nTensorFlow Library: {tf_version}"


def model_configs(flags: Flags) -> list[ModelConfig]:
    """`--model_config_file` wins over `--model_name`/`--model_base_path`."""
    path = flags.get_str("model_config_file")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"Could not read model config file {path}: {exc.strerror or exc}") from None
        return parse_model_server_config(text)
    base = flags.get_str("model_base_path")
    if not base:
        raise ConfigError("Both server_options.model_base_path and server_options.model_config_file are empty!")
    return single_model_config(flags.get_str("model_name"), base)


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"Could not read {what} {path}: {exc.strerror or exc}") from None


def metrics_path(flags: Flags) -> str:
    """The Prometheus path `--monitoring_config_file` enables, or ""."""
    path = flags.get_str("monitoring_config_file")
    if not path:
        return ""
    config = parse_monitoring_config(_read(path, "monitoring config file"))
    return config.prometheus_path if config.prometheus_enabled else ""


def check_batching(flags: Flags) -> None:
    """The server refuses to start on a bad batching parameters file; requests are not batched here."""
    path = flags.get_str("batching_parameters_file")
    if flags.get_bool("enable_batching") and path:
        parse_batching_parameters(_read(path, "batching parameters file"))


def _warn_unemulated(flags: Flags) -> None:
    for name in flags.not_emulated():
        log.warning("--%s=%s is accepted but not emulated by the local runtime", name, flags.values[name])
    if flags.get_str("batching_parameters_file") and not flags.get_bool("enable_batching"):
        log.warning("--batching_parameters_file was given without --enable_batching")


def _rest_port(flags: Flags) -> int | None:
    """The container REST port to serve, or None when REST is off (as upstream decides)."""
    grpc, rest = flags.get_int("port"), flags.get_int("rest_api_port")
    if grpc:
        log.info("gRPC is not served by the local runtime (--port=%d accepted and ignored)", grpc)
    if rest == 0:
        log.info("REST API is disabled (--rest_api_port=0)")
        return None
    if rest == grpc:
        log.error(
            "server_options.http_port cannot be same as grpc_port. Please use a different port for HTTP/REST "
            "API. Skipped setting up HTTP/REST API server."
        )
        return None
    return rest


def _threads(flags: Flags) -> tuple[int, int]:
    intra, inter = flags.get_int("tensorflow_intra_op_parallelism"), flags.get_int("tensorflow_inter_op_parallelism")
    if intra > 0 or inter > 0:
        return intra, inter
    both = flags.get_int("tensorflow_session_parallelism")
    return both, both


POLLER_JOIN_S = 30.0  # a version load in progress is allowed to finish


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        flags = parse_flags(args)
    except FlagError as exc:
        print(f"{exc}\n{usage()}", file=sys.stderr)
        return EXIT_FAILURE
    if flags.get_bool("version"):
        print(_version_text())
        return 0
    _configure_logging()
    stop = threading.Event()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        stop.set()
        raise _Interrupted()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _serve(flags, stop)
    except _Interrupted:
        log.info("Interrupted before serving; exiting")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(flags: Flags, stop: threading.Event) -> int:
    try:
        configs = model_configs(flags)
        check_batching(flags)
        prometheus = metrics_path(flags)
        host, mapping = portmap.from_env()
    except (ConfigError, ValueError) as exc:
        print(f"Failed to start server. Error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    _warn_unemulated(flags)
    rest_port = _rest_port(flags)
    bind_port = portmap.host_port(rest_port, mapping) if rest_port is not None else None
    if rest_port is not None and bind_port is None:
        log.info("REST port %d is mapped to 0 by %s; not binding it", rest_port, portmap.PORT_MAP_ENV)

    intra, inter = _threads(flags)
    tags = [t for t in flags.get_str("saved_model_tags").split(",") if t]
    manager = ModelManager(
        default_loader(tags, intra, inter, warmup=flags.get_bool("enable_model_warmup")),
        allow_labels_for_unavailable=flags.get_bool("allow_version_labels_for_unavailable_models"),
    )
    poll = float(flags.get_int("file_system_poll_wait_seconds"))
    try:
        manager.load(configs, poll_seconds=poll if poll > 0 else 1.0, stop=stop)
    except (_Interrupted, KeyboardInterrupt):
        log.info("Interrupted while loading models; exiting")
        manager.close()
        return 0
    except LoadError as exc:
        print(f"Failed to start server. Error: {exc}", file=sys.stderr)
        manager.close()
        return EXIT_FAILURE

    poller = None
    if poll > 0:
        poller = threading.Thread(target=manager.poll_forever, args=(poll, stop), name="version-poller", daemon=True)
        poller.start()
    server = None
    if bind_port is not None:
        if prometheus:
            log.info("Prometheus metrics at %s", prometheus)
        server = RestServer(RestApi(manager, cors=flags.get_bool("rest_api_enable_cors_support"),
                                    metrics_path=prometheus),
                            flags.get_int("rest_api_num_threads"), flags.get_int("rest_api_timeout_in_ms"))

    def bound(port: int) -> None:
        log.info("Exporting HTTP/REST API at:%s:%d (container port %s) ...", host, port, rest_port)

    try:
        asyncio.run(run_until_signalled(server, host, bind_port, bound))
    except OSError as exc:
        print(f"Failed to start server. Error: Failed to start HTTP Server at {host}:{bind_port}: {exc}",
              file=sys.stderr)
        return EXIT_FAILURE
    finally:
        stop.set()
        if poller is not None:
            # A poller still inside TensorFlow while the interpreter finalizes aborts the process.
            poller.join(POLLER_JOIN_S)
        manager.close()
    return 0
