"""Model pre-flight in the reconciler and in `tfms apply` (issue 8), against the Cloud Run emulator.

A model that would not serve is refused before any Cloud Run call, with the problem and the fix
in the condition and the event; a good one deploys with what was found in `status.model`; the
model is read once per spec generation, not on every resync.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import base_object
from tests.fakegcs import FakeGcs
from tests.integration.conftest import HPT
from tfms.api.defaults import Defaults
from tfms.api.schema import STATUS_SCHEMA
from tfms.backends import storage
from tfms.backends.cloudrun import CloudRun
from tfms.cli.main import main
from tfms.emulator import Emulator
from tfms.handlers.config import OperatorConfig
from tfms.plan.status import status_patch
from tfms.reconcile.objects import Outcome, reconcile_object
from tfms.reconcile.preflight import ModelCheck

DEFAULTS = Defaults()
WRITES = {"CreateService", "UpdateService", "DeleteService", "SetIamPolicy"}


def _body(name: str = "hpt", **model: Any) -> dict[str, Any]:
    obj = base_object(model={"name": "half_plus_two", "basePath": str(HPT), **model})
    obj["metadata"].update(name=name, generation=1, uid=f"0b0e6b2e-2222-4c1a-9a55-{abs(hash(name)) % 10**12:012d}")
    obj["status"] = {}
    return obj


async def _pass(api: CloudRun, body: dict[str, Any], check: ModelCheck | None, now: str = "t0") -> Outcome:
    outcome = await reconcile_object(api, body, DEFAULTS, now=now, model_check=check)
    body["status"] = outcome.status
    return outcome


async def _until_done(api: CloudRun, body: dict[str, Any], check: ModelCheck | None) -> Outcome:
    for _ in range(200):
        outcome = await _pass(api, body, check)
        if outcome.done or outcome.permanent:
            return outcome
    raise AssertionError(f"not done: {outcome}")


def _cond(outcome: Outcome, kind: str) -> dict[str, Any]:
    return next(c for c in outcome.status["conditions"] if c["type"] == kind)


def _writes(emulator: Emulator) -> int:
    return sum(1 for c in emulator.control.calls if c.method in WRITES)


async def test_a_good_local_model_deploys_with_its_resolved_version(backend: CloudRun) -> None:
    body = _body()  # no pin: the newest version directory serves
    first = await _pass(backend, body, ModelCheck())
    assert ("ModelChecked", f"serving version 2 of {HPT}") in [(e.reason, e.message) for e in first.events]
    done = await _until_done(backend, body, ModelCheck())
    assert done.ready
    assert done.status["model"] == {"basePath": str(HPT), "observedGeneration": 1, "resolvedVersion": 2,
                                    "versions": [2], "signatureName": "serving_default"}
    checked = _cond(done, "ModelChecked")
    assert (checked["status"], checked["reason"]) == ("True", "ModelValid")
    assert [c["type"] for c in done.status["conditions"]] == [
        "Ready", "Validated", "ModelChecked", "ServiceReady", "TrafficReady"]


async def test_a_pinned_version_resolves_to_it(backend: CloudRun) -> None:
    done = await _until_done(backend, _body(version=1), ModelCheck())
    assert done.ready and done.status["model"]["resolvedVersion"] == 1 and done.status["model"]["versions"] == [1]


REFUSED = [
    pytest.param({"version": 7}, "spec.model.version 7 is not in", "or pin a version that is there",
                 id="pinned-version-missing"),
    pytest.param({"signatureName": "predict_images"}, "signature 'predict_images' not found",
                 "fix spec.model.signatureName", id="b031-signature-missing"),
    pytest.param({"basePath": str(HPT / "1")}, "holds a SavedModel itself", "move the model to",
                 id="base-path-is-a-version-dir"),
    pytest.param({"versionLabels": {"stable": 1, "canary": 3}}, "label 'canary' points at version 3",
                 "refuses to start", id="i021-b026-label-on-a-missing-version"),
]


@pytest.mark.parametrize(("model", "problem", "fix"), REFUSED)
async def test_a_model_that_would_not_serve_is_refused_before_any_cloud_run_call(
        backend: CloudRun, emulator: Emulator, model: dict[str, Any], problem: str, fix: str) -> None:
    body = _body(**model)
    calls = len(emulator.control.calls)
    outcome = await _pass(backend, body, ModelCheck())
    assert outcome.permanent and outcome.done and not outcome.transient
    assert problem in outcome.permanent and fix in outcome.permanent
    ready, checked = _cond(outcome, "Ready"), _cond(outcome, "ModelChecked")
    assert (ready["status"], ready["reason"]) == ("False", "ModelInvalid") and problem in ready["message"]
    assert (checked["status"], checked["reason"]) == ("False", "ModelInvalid")
    (event,) = outcome.events
    assert (event.type, event.reason) == ("Warning", "ModelInvalid") and problem in event.message
    assert len(emulator.control.calls) == calls  # not even a read
    # A resync of the same generation is refused again, from status alone, without a new event.
    again = await _pass(backend, body, ModelCheck(), now="t1")
    assert again.permanent and again.events == [] and again.status == outcome.status
    assert len(emulator.control.calls) == calls


async def test_b023_a_model_that_cannot_load_within_the_startup_window_is_refused(
        backend: CloudRun, emulator: Emulator) -> None:
    """B-023: a revision killed by its startup probe before the model loads never becomes ready;
    say so before deploying, with what to change."""
    body = _body(version=1)
    body["spec"]["runtime"]["startupProbe"] = {"initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 1,
                                               "failureThreshold": 1}
    outcome = await _pass(backend, body, ModelCheck())
    assert outcome.permanent and "longer than the startup probe's window of 1s" in outcome.permanent
    assert "raise spec.runtime.startupProbe" in outcome.permanent
    assert _writes(emulator) == 0


async def test_i023_a_path_inside_the_image_is_not_checked_and_deploys(
        backend: CloudRun, shared_dir: Path) -> None:
    """I-023: the model is baked into the image (--model_base_path=/tf_models); tfms cannot read it,
    so the condition says so and the deploy goes on."""
    case = yaml.safe_load((shared_dir / "cases" / "inputs" / "023-tfserving-on-cloudrun-container.yaml").read_text())
    base = next(a.split("=", 1)[1] for a in case["container"]["args"] if a.startswith("--model_base_path="))
    assert not Path(base).exists()
    done = await _until_done(backend, _body(basePath=base), ModelCheck())
    assert done.ready
    checked = _cond(done, "ModelChecked")
    assert (checked["status"], checked["reason"]) == ("Unknown", "NotChecked")
    assert "expected inside the image" in checked["message"]
    assert done.status["model"] == {"basePath": base, "observedGeneration": 1}


async def test_in_local_mode_a_missing_path_is_refused_not_left_to_an_image(
        backend: CloudRun, emulator: Emulator, tmp_path: Path) -> None:
    """`tfms up` runs revisions on this machine: no image can hold the model, so a basePath that
    is not here (say, a copied manifest whose relative path no longer resolves) fails at once."""
    missing = str(tmp_path / "models" / "half_plus_two")
    done = await _until_done(backend, _body(basePath=missing), ModelCheck(local=True))
    ready = _cond(done, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ModelInvalid")
    assert f"spec.model.basePath: {missing} is not a directory on this machine" in done.permanent
    assert _writes(emulator) == 0


async def test_a_gcs_model_records_the_object_generation(backend: CloudRun, fake_gcs: FakeGcs) -> None:
    body = _body(basePath="gs://example-bucket/models/hpt", version=1)
    done = await _until_done(backend, body, ModelCheck())
    assert done.ready
    generation = fake_gcs.buckets["example-bucket"]["models/hpt/1/saved_model.pb"][1]
    assert done.status["model"]["savedModelGeneration"] == str(generation)
    assert done.status["model"]["resolvedVersion"] == 1
    # Declared in the CRD (or the API server would prune it) with the types written, and owned by tfms.
    declared = STATUS_SCHEMA["properties"]["model"]["properties"]
    types = {"integer": int, "string": str, "array": list}
    assert all(isinstance(v, types[declared[k]["type"]]) for k, v in done.status["model"].items())
    assert status_patch(done.status, {}).get("model", "kept") is None


async def test_the_model_is_read_once_per_generation(backend: CloudRun, emulator: Emulator,
                                                     fake_gcs: FakeGcs) -> None:
    body = _body(basePath="gs://example-bucket/models/hpt", version=1)
    check = ModelCheck()
    await _pass(backend, body, check)
    reads = len(fake_gcs.calls)
    assert reads > 0
    done = await _until_done(backend, body, check)
    writes = _writes(emulator)
    resync = await _pass(backend, body, ModelCheck(), now="t9")  # a restarted operator: only status remembers
    assert resync.status == done.status and resync.events == []
    assert len(fake_gcs.calls) == reads and _writes(emulator) == writes
    # A new generation is read again.
    body["metadata"]["generation"] = 2
    body["spec"]["model"]["version"] = 2
    second = await _until_done(backend, body, check)
    assert len(fake_gcs.calls) > reads
    assert second.status["model"]["observedGeneration"] == 2 and second.status["model"]["resolvedVersion"] == 2


async def test_unavailable_storage_is_retried_and_writes_nothing(
        backend: CloudRun, emulator: Emulator, fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "RETRY_BUDGET_S", 0.2)  # the library's own retries, kept short
    body = _body(basePath="gs://flaky/models/m")
    outcome = await _pass(backend, body, ModelCheck())
    assert outcome.transient and not outcome.permanent and not outcome.done
    assert "backend unavailable" in outcome.transient
    checked = _cond(outcome, "ModelChecked")
    assert (checked["status"], checked["reason"]) == ("Unknown", "StorageUnavailable")
    assert "model" not in outcome.status and len(emulator.control.calls) == 0
    reads = len(fake_gcs.calls)
    await _pass(backend, body, ModelCheck(), now="t1")  # not recorded for this generation: read again
    assert len(fake_gcs.calls) > reads


async def test_a_missing_bucket_is_refused(backend: CloudRun, emulator: Emulator, fake_gcs: FakeGcs) -> None:
    body = _body(basePath="gs://no-such-bucket/models/m")
    outcome = await _pass(backend, body, ModelCheck())
    assert outcome.permanent and "The specified bucket does not exist" in outcome.permanent
    assert "fix spec.model.basePath" in outcome.permanent
    reads = len(fake_gcs.calls)
    again = await _pass(backend, body, ModelCheck(), now="t1")  # refused again from status: nothing to write
    assert again.permanent and again.status == outcome.status and len(fake_gcs.calls) == reads
    assert len(emulator.control.calls) == 0


async def test_a_denied_bucket_does_not_block(backend: CloudRun, fake_gcs: FakeGcs) -> None:
    """The operator's identity is not the one the revision reads the model with."""
    done = await _until_done(backend, _body(basePath="gs://denied/models/m"), ModelCheck())
    assert done.ready
    checked = _cond(done, "ModelChecked")
    assert (checked["status"], checked["reason"]) == ("False", "StorageError")
    assert "roles/storage.objectViewer" in checked["message"]


async def test_missing_credentials_deploy_with_the_model_not_checked(
        backend: CloudRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TFMS_STORAGE_ENDPOINT", "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud application-default credentials
    looked_up: list[str | None] = []
    real = storage.make_client

    def counting(endpoint: str | None = None) -> Any:
        looked_up.append(endpoint)
        return real(endpoint)

    monkeypatch.setattr(storage, "make_client", counting)
    check = ModelCheck()
    body = _body(basePath="gs://example-bucket/models/fraud")
    first = await _pass(backend, body, check)
    assert ("Warning", "ModelNotChecked") in [(e.type, e.reason) for e in first.events]
    done = await _until_done(backend, body, check)
    assert done.ready
    checked = _cond(done, "ModelChecked")
    assert (checked["status"], checked["reason"]) == ("Unknown", "CredentialsMissing")
    assert "gcloud auth application-default login" in checked["message"]
    other = _body("other", basePath="gs://example-bucket/models/other")
    await _pass(backend, other, check)
    assert len(looked_up) == 1  # credentials are not looked for again on every object


async def test_warn_mode_reports_and_deploys(backend: CloudRun, emulator: Emulator) -> None:
    body = _body(version=7)
    first = await _pass(backend, body, ModelCheck("warn"))
    assert not first.permanent and _writes(emulator) == 1
    event = next(e for e in first.events if e.reason == "ModelInvalid")
    assert event.type == "Warning" and "TFMS_MODEL_CHECK=warn" in event.message
    checked = _cond(first, "ModelChecked")
    assert (checked["status"], checked["reason"]) == ("False", "ModelInvalid")


async def test_without_a_model_check_status_has_no_model(backend: CloudRun) -> None:
    body = _body(version=1)
    await _until_done(backend, body, ModelCheck())
    assert "model" in body["status"]
    off = await _pass(backend, copy.deepcopy(body), None)
    assert "model" not in off.status and "ModelChecked" not in [c["type"] for c in off.status["conditions"]]


def test_operator_config_reads_tfms_model_check() -> None:
    assert OperatorConfig.from_env({}).model_check == "enforce"
    assert OperatorConfig.from_env({"TFMS_MODEL_CHECK": "Warn"}).model_check == "warn"
    assert ModelCheck.for_mode(OperatorConfig.from_env({"TFMS_MODEL_CHECK": "off"}).model_check) is None
    with pytest.raises(SystemExit, match="TFMS_MODEL_CHECK must be one of enforce, warn, off"):
        OperatorConfig.from_env({"TFMS_MODEL_CHECK": "strict"})


def _manifest(tmp_path: Path, **model: Any) -> Path:
    path = tmp_path / "hpt.yaml"
    path.write_text(yaml.safe_dump(base_object(model={"name": "half_plus_two", "basePath": str(HPT), **model})))
    return path


def test_cli_apply_refuses_a_bad_model(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TFMS_MODEL_CHECK", raising=False)  # the default: enforce
    path = _manifest(tmp_path, version=7)
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address, "--timeout", "20"]) == 1
    out = capsys.readouterr().out
    assert "ModelInvalid" in out and "spec.model.version 7 is not in" in out
    assert _writes(emulator) == 0
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address, "--timeout", "20",
                 "--no-check-model"]) == 0
    assert _writes(emulator) > 0


def test_cli_apply_check_model_flag_overrides_off(emulator: Emulator, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFMS_MODEL_CHECK", "off")
    path = _manifest(tmp_path, signatureName="predict_images")
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address, "--check-model"]) == 1
    assert _writes(emulator) == 0
    good = _manifest(tmp_path, version=2)
    assert main(["apply", "-f", str(good), "--endpoint", emulator.address, "--timeout", "20",
                 "--check-model"]) == 0
