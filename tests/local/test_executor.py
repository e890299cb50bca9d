"""LocalExecutor with real processes (a fake model server in place of tfms.runtime)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.local.conftest import (
    SERVICE,
    SERVING_ARGS,
    RecordingEvents,
    make_launch,
    pid_alive,
    start,
    wait_until,
)
from tfms.emulator.local import LocalExecutor

# The renderer's wrapper for a pinned model version (tfms.render.tfserving), verbatim in shape.
CONFIG_SCRIPT = (
    'f="${TMPDIR:-/tmp}/tfms-models.config"; '
    'printf \'%s\' "$TFMS_MODEL_CONFIG" > "$f" && '
    'exec tensorflow_model_server --model_config_file="$f" "$@"'
)


def seen(port: int, path: str = "/v1/models/x") -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_server_command_becomes_ready_with_container_contract(
    executor: LocalExecutor, events: RecordingEvents
) -> None:
    launch = make_launch("svc-00001-abc")
    port = start(executor, events, launch)
    status = executor.revision_status(launch.revision)
    assert status is not None and status.state == "ready"
    got = seen(port)
    assert got["model"] == "half_plus_two" and got["model_base_path"] == "/abs/models/hpt"
    assert got["revision"] == "svc-00001-abc"
    env = got["env"]
    assert (env["PORT"], env["K_SERVICE"], env["K_CONFIGURATION"]) == ("8080", "svc", "svc")
    assert env["TFMS_RUNTIME_PORT_MAP"] == f"8080:{port},8500:0,8501:0"
    assert env["TFMS_RUNTIME_HOST"] == "127.0.0.1"
    assert env["TMPDIR"] == str(status.workdir / "tmp")
    assert env["PATH"].split(os.pathsep)[0] == str(status.workdir / "bin")
    assert status.workdir == executor.run_dir / "p" / "us-central1" / "svc" / "svc-00001-abc"
    assert "fake model server starting" in status.log_path.read_text()
    assert threading.get_ident() not in events.threads


def test_sh_wrapper_writes_model_config_under_revision_tmpdir(
    executor: LocalExecutor, events: RecordingEvents
) -> None:
    config = 'model_config_list {\n  config {\n    name: "half_plus_two"\n    base_path: "/m"\n  }\n}\n'
    launch = make_launch(
        "svc-00002-cfg",
        command=("/bin/sh", "-c", CONFIG_SCRIPT, "tensorflow_model_server"),
        env={"TFMS_MODEL_CONFIG": config},
    )
    got = seen(start(executor, events, launch))
    status = executor.revision_status(launch.revision)
    assert status is not None
    assert got["config"] == config
    assert Path(got["config_path"]) == status.workdir / "tmp" / "tfms-models.config"
    assert got["args"][0] == f"--model_config_file={got['config_path']}"  # then "$@"
    assert got["args"][1:3] == list(SERVING_ARGS)


def test_no_command_uses_image_entrypoint_defaults(executor: LocalExecutor, events: RecordingEvents) -> None:
    # Cloud Run recipe (a): container port 8501 matches the entrypoint's hard-coded REST port.
    launch = make_launch("svc-00003-ep", command=(), args=(), port=8501)
    got = seen(start(executor, events, launch))
    assert got["model"] == "model" and got["model_base_path"] == "/models/model"
    assert got["args"] == ["--port=8500", "--rest_api_port=8501", "--model_name=model",
                           "--model_base_path=/models/model"]
    assert got["env"]["TFMS_RUNTIME_PORT_MAP"].startswith("8501:")


def test_entrypoint_overrides_by_env_and_args(executor: LocalExecutor, events: RecordingEvents) -> None:
    # Recipe (b): keep 8080 and append --rest_api_port=8080 (the last flag wins); the entrypoint is
    # named by its absolute path in the image, which maps to the shim.
    launch = make_launch(
        "svc-00004-ep",
        command=("/usr/bin/tf_serving_entrypoint.sh",),
        args=("--rest_api_port=8080",),
        env={"MODEL_NAME": "half", "MODEL_BASE_PATH": "/srv/models"},
    )
    got = seen(start(executor, events, launch))
    assert got["model"] == "half" and got["model_base_path"] == "/srv/models/half"
    assert got["args"][-1] == "--rest_api_port=8080"


def test_gpu_image_runs_on_cpu(executor: LocalExecutor, events: RecordingEvents) -> None:
    start(executor, events, make_launch("svc-00005-gpu", image="docker.io/tensorflow/serving:2.19.0-gpu"))


def test_unknown_image_is_container_missing(executor: LocalExecutor, events: RecordingEvents) -> None:
    launch = make_launch("svc-00006-img", image="gcr.io/p/other:1")
    executor.launch(launch)
    outcome = events.wait(launch.revision)
    assert outcome[:2] == ("failed", "CONTAINER_MISSING")
    assert outcome[2].startswith("Image 'gcr.io/p/other:1' cannot run in local mode: ")
    assert threading.get_ident() not in events.threads  # not reported from inside launch()


def test_crash_before_ready_reports_exit_code_and_log_tail(
    executor: LocalExecutor, events: RecordingEvents
) -> None:
    launch = make_launch("svc-00007-crash", env={"FAKE_EXIT_CODE": "3"})
    executor.launch(launch)
    outcome = events.wait(launch.revision)
    assert outcome[:2] == ("failed", "HEALTH_CHECK_CONTAINER_ERROR")
    message = outcome[2]
    assert "failed to start and listen on the port defined by PORT=8080" in message
    assert "exited with code 3" in message
    assert message.endswith("fatal: could not load the model")
    assert "log line 29" in message and "log line 10" not in message  # the last 20 lines only


def test_missing_executable_fails_health_check(executor: LocalExecutor, events: RecordingEvents) -> None:
    launch = make_launch("svc-00008-nocmd", command=("/nonexistent/server",))
    executor.launch(launch)
    outcome = events.wait(launch.revision)
    assert outcome[:2] == ("failed", "HEALTH_CHECK_CONTAINER_ERROR")
    assert "/nonexistent/server" in outcome[2]


@pytest.mark.parametrize(
    "overrides",
    [
        {"env": {"FAKE_STARTUP_DELAY_S": "60"}},
        # The entrypoint's REST port 8501 while PORT=8080: nothing ever listens on $PORT.
        {"command": (), "args": ()},
    ],
    ids=["slow-start", "rest-port-mismatch"],
)
def test_startup_timeout_kills_the_container(
    executor: LocalExecutor, events: RecordingEvents, overrides: dict[str, Any]
) -> None:
    launch = make_launch("svc-00009-slow", startup_timeout_s=1.0, **overrides)
    executor.launch(launch)
    wait_until(lambda: (s := executor.revision_status(launch.revision)) is not None and s.pid is not None)
    status = executor.revision_status(launch.revision)
    assert status is not None and status.pid is not None
    outcome = events.wait(launch.revision)
    assert outcome[:2] == ("failed", "HEALTH_CHECK_CONTAINER_ERROR")
    assert "within the startup timeout of 1s" in outcome[2] and "--rest_api_port=8080" in outcome[2]
    assert not pid_alive(status.pid)


def test_stop_revision_terminates_without_events(executor: LocalExecutor, events: RecordingEvents) -> None:
    launch = make_launch("svc-00010-stop")
    port = start(executor, events, launch)
    pid = seen(port)["pid"]
    executor.stop_revision(launch.revision)
    wait_until(lambda: not pid_alive(pid), message="stopped revision to exit")
    wait_until(lambda: executor.revision_status(launch.revision).state == "stopped")  # type: ignore[union-attr]
    assert len(events.outcomes) == 1


def test_stop_during_startup(executor: LocalExecutor, events: RecordingEvents) -> None:
    launch = make_launch("svc-00011-early", env={"FAKE_STARTUP_DELAY_S": "60"})
    executor.launch(launch)
    wait_until(lambda: (s := executor.revision_status(launch.revision)) is not None and s.pid is not None)
    pid = executor.revision_status(launch.revision).pid  # type: ignore[union-attr]
    assert pid is not None
    executor.stop_revision(launch.revision)
    wait_until(lambda: not pid_alive(pid), message="starting revision to exit")
    assert launch.revision not in events.outcomes


def test_relaunch_after_failure_starts_fresh(executor: LocalExecutor, events: RecordingEvents) -> None:
    launch = make_launch("svc-00012-again", env={"FAKE_EXIT_CODE": "1"})
    executor.launch(launch)
    assert events.wait(launch.revision)[0] == "failed"
    events.outcomes.clear()
    start(executor, events, make_launch("svc-00012-again"))


def test_delete_service_stops_all_its_revisions(executor: LocalExecutor, events: RecordingEvents) -> None:
    pids = [seen(start(executor, events, make_launch(f"svc-0001{i}-del")))["pid"] for i in range(2)]
    other = make_launch("keep-00001-x", service="projects/p/locations/us-central1/services/keep")
    other_pid = seen(start(executor, events, other))["pid"]
    executor.delete_service(SERVICE)
    wait_until(lambda: not any(pid_alive(p) for p in pids), message="service's revisions to exit")
    assert pid_alive(other_pid)


def test_close_leaves_no_children_and_removes_temp_dir(
    fake_server: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TFMS_LOCAL_DIR", raising=False)
    events = RecordingEvents()
    ex = LocalExecutor(runtime_command=[sys.executable, "-I", str(fake_server)])
    ex.bind(events)
    try:
        pids = [seen(start(ex, events, make_launch(f"svc-0002{i}-close")))["pid"] for i in range(2)]
        slow = make_launch("svc-00029-close", env={"FAKE_STARTUP_DELAY_S": "60"})
        ex.launch(slow)
        wait_until(lambda: (s := ex.revision_status(slow.revision)) is not None and s.pid is not None)
        pids.append(ex.revision_status(slow.revision).pid)  # type: ignore[union-attr]
        run_dir = ex.run_dir
        assert run_dir.is_dir()
    finally:
        ex.close()
    assert not [p for p in pids if pid_alive(p)]
    assert not run_dir.exists()
    ex.close()  # idempotent


def test_children_die_with_a_killed_parent(tmp_path: Path, fake_server: Path) -> None:
    """PR_SET_PDEATHSIG: SIGKILL the executor's process and its model servers follow."""
    script = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.local.conftest import RecordingEvents, make_launch
        from tfms.emulator.local import LocalExecutor
        events = RecordingEvents()
        ex = LocalExecutor(run_dir={str(tmp_path / 'run')!r},
                           runtime_command=[sys.executable, "-I", {str(fake_server)!r}])
        ex.bind(events)
        launch = make_launch("svc-00030-orphan")
        ex.launch(launch)
        assert events.wait(launch.revision) == ("ready",)
        print(ex.revision_status(launch.revision).pid, flush=True)
        threading.Event().wait()
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert pid_alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: not pid_alive(child), message="orphaned model server to exit")
    finally:
        parent.kill()
        parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


def test_a_nul_byte_fails_the_revision_instead_of_hanging_it(executor: LocalExecutor, events: RecordingEvents) -> None:
    """Popen refuses it with ValueError: the revision must fail, not stay 'Deploying' forever."""
    launch = make_launch("svc-00009-nul", env={"A": "a\x00b"})
    executor.launch(launch)
    outcome = events.wait(launch.revision)
    assert outcome[:2] == ("failed", "HEALTH_CHECK_CONTAINER_ERROR") and "null byte" in outcome[2], outcome
