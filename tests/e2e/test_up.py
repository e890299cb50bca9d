"""`tfms up` end to end, as the README runs it: real TensorFlow predictions, a measured split.

One `tfms up` serves the shipped half_plus_two example and basic-pitch's SavedModel (a model
nobody here wrote); the tests then predict, roll out a canary with `tfms apply`, count
which revision answers, and stop it all with Ctrl-C.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from tests.conftest import REPO
from tests.e2e.upproc import UpProcess, alive
from tests.models import basic_pitch_model_dir

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "manifests" / "examples" / "half-plus-two.yaml"
SERVICE = "projects/example-project/locations/us-central1/services/half-plus-two"


def _post(url: str, body: Any, timeout: float = 30) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null"), dict(err.headers)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def basic_pitch_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = {
        "apiVersion": "serving.tfms.dev/v1alpha1", "kind": "TFModelService",
        "metadata": {"name": "basic-pitch"},
        "spec": {"project": "example-project", "region": "us-central1",
                 "model": {"name": "basic_pitch", "basePath": str(basic_pitch_model_dir())}},
    }
    path = tmp_path_factory.mktemp("specs") / "basic-pitch.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def up(basic_pitch_spec: Path) -> Iterator[UpProcess]:
    proc = UpProcess(str(EXAMPLE), str(basic_pitch_spec), "--port", "0")
    try:
        proc.wait_for(r"tfms up: serving", timeout=300)
        yield proc
    finally:
        proc.kill()


def _url(up: UpProcess, service: str) -> str:
    return up.wait_for(rf"^{service}: (http://\S+)", timeout=1).group(1)


def _address(up: UpProcess) -> str:
    return up.wait_for(r"Cloud Run emulator: (\S+)", timeout=1).group(1)


def test_half_plus_two_predicts(up: UpProcess) -> None:
    url = _url(up, "half-plus-two")
    status, body, _ = _post(f"{url}/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]})
    assert (status, body) == (200, {"predictions": [2.5, 3.0, 4.5]})
    print(f"\nseconds from `tfms up` to the first prediction: {time.monotonic() - up.started:.1f}")


def test_model_status_and_tf_serving_errors(up: UpProcess) -> None:
    url = _url(up, "half-plus-two")
    status = _get(f"{url}/v1/models/half_plus_two")
    assert status["model_version_status"][0]["version"] == "1"
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    code, body, _ = _post(f"{url}/v1/models/half_plus_two:predict", {"instances": [1.0], "inputs": [1.0]})
    assert code == 400 and "expecting only one of 'inputs' or 'instances'" in body["error"]  # B-028
    code, body, _ = _post(f"{url}/v1/models/half_plus_two:predict",
                          {"signature_name": "predict_images", "instances": [1.0]})
    assert code == 400 and body["error"] == 'Serving signature name: "predict_images" not found in signature def'


def test_basic_pitch_real_outputs(up: UpProcess) -> None:
    url = _url(up, "basic-pitch")
    meta = _get(f"{url}/v1/models/basic_pitch/metadata")
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    dims = {name: [int(d["size"]) for d in t["tensor_shape"]["dim"]] for name, t in sig["outputs"].items()}
    assert dims == {"contour": [-1, 172, 264], "note": [-1, 172, 88], "onset": [-1, 172, 88]}
    assert list(sig["inputs"]) == ["input_2"]
    code, body, _ = _post(f"{url}/v1/models/basic_pitch:predict",
                          {"inputs": {"input_2": [[[0.0]] * 43844]}}, timeout=120)
    assert code == 200, body
    shapes = {k: (len(v), len(v[0]), len(v[0][0])) for k, v in body["outputs"].items()}
    assert shapes == {"contour": (1, 172, 264), "note": (1, 172, 88), "onset": (1, 172, 88)}


def test_canary_split_and_tag_urls(up: UpProcess, tmp_path: Path) -> None:
    url, address = _url(up, "half-plus-two"), _address(up)
    stable = up.wait_for(r"^half-plus-two\s+http\S+\s+True\s+(\S+)", timeout=1).group(1)
    canary = yaml.safe_load(EXAMPLE.read_text())
    canary["spec"]["model"].update(version=2, basePath=str(EXAMPLE.parent / "models" / "half_plus_two"))
    canary["spec"]["traffic"] = [{"revision": stable, "percent": 80, "tag": "stable"},
                                 {"latestRevision": True, "percent": 20, "tag": "canary"}]
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(canary))
    tfms = Path(sys.executable).parent / "tfms"
    result = subprocess.run([str(tfms), "apply", "--endpoint", address, "-f", str(path), "--timeout", "240"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    answers: Counter[float] = Counter()
    for _ in range(1000):
        code, body, _ = _post(f"{url}/v1/models/half_plus_two:predict", {"instances": [1.0]})
        assert code == 200, body
        answers[body["predictions"][0]] += 1
    assert set(answers) == {2.5, 3.5}  # version 1: 0.5x+2, version 2: 0.5x+3
    assert abs(answers[2.5] / 10 - 80) <= 5 and abs(answers[3.5] / 10 - 20) <= 5, answers

    channel = grpc.insecure_channel(address)
    live = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)).get_service(name=SERVICE)
    channel.close()
    tags = {t.tag: t.uri for t in live.traffic_statuses if t.tag}
    assert set(tags) == {"stable", "canary"}
    for tag, uri in tags.items():  # apply tells the user each tag's URL
        assert f"half-plus-two tag {tag}: {uri}" in result.stdout.splitlines(), result.stdout
    for tag, expected in (("stable", 2.5), ("canary", 3.5)):
        seen = {_post(f"{tags[tag]}/v1/models/half_plus_two:predict", {"instances": [1.0]})[1]["predictions"][0]
                for _ in range(20)}
        assert seen == {expected}, (tag, seen)


def test_ctrl_c_stops_every_process(up: UpProcess) -> None:
    children = up.descendants()
    assert children, "tfms up should be running model servers"
    assert up.interrupt(timeout=60) == 0
    deadline = time.monotonic() + 30
    while [p for p in children if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if alive(p)]
