"""Pure parts of tfms.runtime: flags, port map, model config, version dirs, floats, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tfms.runtime.config import ConfigError, VersionPolicy, parse_model_server_config, single_model_config
from tfms.runtime.errors import ServingError
from tfms.runtime.flags import FlagError, parse_flags
from tfms.runtime.floatfmt import float_tokens, format_float32, format_float64
from tfms.runtime.jsonvalue import parse_json, value_to_string
from tfms.runtime.portmap import host_port, parse_port_map
from tfms.runtime.versions import list_versions, parse_version, select_versions

# ---- flags ----------------------------------------------------------------------------


def test_flag_defaults_match_tf_serving() -> None:
    flags = parse_flags([])
    assert flags.get_int("port") == 8500
    assert flags.get_int("rest_api_port") == 0
    assert flags.get_int("rest_api_timeout_in_ms") == 30000
    assert flags.get_int("file_system_poll_wait_seconds") == 1
    assert flags.get_str("model_name") == "default"
    assert flags.get_str("saved_model_tags") == "serve"
    assert flags.get_bool("enable_model_warmup") is True
    assert flags.get_bool("enable_batching") is False


def test_flags_equals_and_space_forms_and_last_wins() -> None:
    flags = parse_flags(["--rest_api_port=8501", "--model_name", "a", "--rest_api_port", "8080", "--model_name=b"])
    assert flags.get_int("rest_api_port") == 8080
    assert flags.get_str("model_name") == "b"


def test_bool_flags_accept_bare_and_valued_forms() -> None:
    assert parse_flags(["--enable_batching"]).get_bool("enable_batching") is True
    assert parse_flags(["--enable_batching=false"]).get_bool("enable_batching") is False
    assert parse_flags(["--enable_model_warmup", "false"]).get_bool("enable_model_warmup") is False
    flags = parse_flags(["--enable_batching", "--model_name", "m"])
    assert flags.get_bool("enable_batching") is True
    assert flags.get_str("model_name") == "m"


def test_not_emulated_flags_are_reported_once() -> None:
    flags = parse_flags(["--enable_batching", "--grpc_max_threads=2", "--enable_batching=true", "--port=1",
                         "--monitoring_config_file=/m", "--enable_model_warmup=false"])
    assert flags.not_emulated() == ["enable_batching", "grpc_max_threads"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no_such_flag=1"], "unknown argument: --no_such_flag=1"),
        (["positional"], "unknown argument: positional"),
        (["--port=abc"], "Illegal value for flag --port"),
        (["--enable_batching=maybe"], "Illegal value for flag --enable_batching"),
        (["--model_name"], "missing value"),
    ],
)
def test_bad_flags_raise(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError, match=message):
        parse_flags(argv)


def test_unknown_flag_exits_nonzero_with_usage() -> None:
    out = subprocess.run([sys.executable, "-m", "tfms.runtime", "--bogus=1"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 255
    assert "unknown argument: --bogus=1" in out.stderr
    assert "--rest_api_port" in out.stderr


def test_no_model_flags_exits_nonzero() -> None:
    out = subprocess.run([sys.executable, "-m", "tfms.runtime", "--rest_api_port=8501"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 255
    assert "Both server_options.model_base_path and server_options.model_config_file are empty!" in out.stderr


def test_version_flag_prints_and_exits_zero() -> None:
    out = subprocess.run([sys.executable, "-m", "tfms.runtime", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("TensorFlow ModelServer: ")
    assert "TensorFlow Library: " in out.stdout


def test_pure_modules_do_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "import tfms.runtime.flags, tfms.runtime.config, tfms.runtime.tensor_decode, tfms.runtime.tensor_encode\n"
        "import tfms.runtime.floatfmt, tfms.runtime.models, tfms.runtime.rest, tfms.runtime.server\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


# ---- port map ------------------------------------------------------------------------


def test_port_map_parsing_and_lookup() -> None:
    mapping = parse_port_map(" 8080:41234, 8500:0 ,")
    assert mapping == {8080: 41234, 8500: 0}
    assert host_port(8080, mapping) == 41234
    assert host_port(8500, mapping) is None
    assert host_port(9000, mapping) == 9000
    assert host_port(8080, {}) == 8080


@pytest.mark.parametrize("text", ["8080", "8080:x", "0:1", "8080:70000"])
def test_bad_port_map_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="TFMS_RUNTIME_PORT_MAP"):
        parse_port_map(text)


# ---- model config --------------------------------------------------------------------

CONFIG = """
# comment
model_config_list {
  config {
    name: 'half_plus_two'
    base_path: "/models/half_plus_two/"
    model_platform: 'tensorflow'
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: 'stable' value: 1 }
    version_labels { key: 'canary' value: 2 }
  }
  config: { name: "b" base_path: "/b" model_platform: "tensorflow"
            model_version_policy: { latest: { num_versions: 3 } } }
  config { name: "c" base_path: "/c" model_version_policy { all {} } }
  config { name: "d" base_path: "/d" model_version_policy { latest {} } }
}
"""


def test_model_config_text_format() -> None:
    models = parse_model_server_config(CONFIG)
    assert [m.name for m in models] == ["half_plus_two", "b", "c", "d"]
    hpt = models[0]
    assert hpt.base_path == "/models/half_plus_two/"
    assert hpt.policy == VersionPolicy("specific", versions=(1, 2))
    assert hpt.labels == {"canary": 2, "stable": 1}
    assert models[1].policy == VersionPolicy("latest", num_versions=3)
    assert models[2].policy.kind == "all"
    assert models[3].policy == VersionPolicy("latest", num_versions=1)  # 0 means 1, as in the C++ source


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_config_list { config { nme: 'x' } }", 'has no field named "nme"'),
        ("model_config_list { config { name: 'x' base_path: 1 } }", "base_path"),
        ("model_config_list { config { name: 'x' model_platform: 'onnx' } }", "unsupported platform onnx"),
        ("model_config_list { config { name: 'x' } config { name: 'x' } }", "multiple times"),
        ("model_config_list { config { name: 'x' model_version_policy { latest { num_versions: -1 } } } }",
         "Invalid ModelServerConfig"),
    ],
)
def test_bad_model_configs(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_model_server_config(text)


def test_single_model_config_defaults_name() -> None:
    (cfg,) = single_model_config("default", "/m")
    assert (cfg.name, cfg.base_path, cfg.policy) == ("default", "/m", VersionPolicy())


# ---- version directories -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version"),
    [("1", 1), ("00000123", 123), (" 7 ", 7), ("+5", 5), ("abc", None), ("1a", None), ("", None),
     ("99999999999999999999", None), ("1.5", None)],
)
def test_parse_version_like_simple_atoi(name: str, version: int | None) -> None:
    assert parse_version(name) == version


def test_list_and_select_versions(tmp_path: object) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    for d in ("1", "0003", "10", "tmp", "002"):
        (base / d).mkdir()
    (base / "7").write_text("a file is not a version")
    found = list_versions(str(base))
    assert sorted(found) == [1, 2, 3, 10]
    assert found[3].endswith("0003")
    assert select_versions(found, VersionPolicy()) == [10]
    assert select_versions(found, VersionPolicy("latest", num_versions=2)) == [10, 3]
    assert select_versions(found, VersionPolicy("all")) == [10, 3, 2, 1]
    assert select_versions(found, VersionPolicy("specific", versions=(1, 3, 99))) == [3, 1]
    with pytest.raises(FileNotFoundError):
        list_versions(str(base / "missing"))


# ---- float formatting ----------------------------------------------------------------

FLOAT32_TABLE = [
    (0.1, "0.1"),
    (1 / 3, "0.333333343"),
    (3.0, "3.0"),
    (9000000.0, "9e+06"),
    (1435774380.0, "1.43577434e+09"),
    (0.00003, "3e-05"),
    (-2.5, "-2.5"),
    (0.0, "0.0"),
    (-0.0, "-0.0"),
    (123456.7, "123456.703"),
    (1234567.0, "1234567.0"),
    (16777216.0, "16777216.0"),
    (float("nan"), "NaN"),
    (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"),
]


@pytest.mark.parametrize(("value", "text"), FLOAT32_TABLE)
def test_float32_formatting(value: float, text: str) -> None:
    assert format_float32(float(np.float32(value))) == text


def test_float32_array_formatting_matches_scalar_path() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([
        np.array([v for v, _ in FLOAT32_TABLE], dtype=np.float32),
        (rng.standard_normal(500) * 1000).astype(np.float32),
        np.round(rng.standard_normal(200) * 100).astype(np.float32),
    ])
    assert float_tokens(values) == [format_float32(v) for v in values.tolist()]
    assert float_tokens(np.array([v for v, _ in FLOAT32_TABLE] * 2, dtype=np.float32)) == [
        t for _, t in FLOAT32_TABLE
    ] * 2


def test_float64_formatting() -> None:
    assert format_float64(0.1) == "0.1"
    assert format_float64(1 / 3) == "0.33333333333333331"
    assert format_float64(3.0) == "3.0"
    assert format_float64(1e17) == "1e+17"
    values = np.array([0.1, 1 / 3, 3.0, 1e17, 12345678.0, float("nan")] * 5, dtype=np.float64)
    assert float_tokens(values) == [format_float64(v) for v in values.tolist()]


# ---- JSON parse errors and value printing ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
        (b"{", "JSON Parse error: Missing a name for object member. at offset: 1"),
        (b"nope", "JSON Parse error: Invalid value. at offset: 0"),
        (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
        (b"[1 2]", "JSON Parse error: Missing a comma or ']' after an array element. at offset: 3"),
        (b'{"a":1 "b":2}', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 7"),
        (b"{} {}", "JSON Parse error: The document root must not be followed by other values. at offset: 3"),
    ],
)
def test_json_parse_errors_use_rapidjson_wording(body: bytes, message: str) -> None:
    with pytest.raises(ServingError) as info:
        parse_json(body)
    assert info.value.message == message


def test_json_accepts_nan_and_infinity() -> None:
    doc = parse_json(b'{"a": [NaN, Infinity, -Infinity]}')
    assert [str(v) for v in doc["a"]] == ["nan", "inf", "-inf"]


def test_value_to_string_is_rapidjson_pretty() -> None:
    assert value_to_string(0.1) == "0.1"  # a double in float range is printed as a float
    assert value_to_string(1.23456789012) == "1.23456788"
    assert value_to_string("s") == '"s"'
    assert value_to_string({"a": [1, 2.5], "b": {}}) == '{\n    "a": [\n        1,\n        2.5\n    ],\n    "b": {}\n}'
    assert json.loads(value_to_string({"x": [1e-7, 1e21]})) == {"x": [1e-7, 1e21]}
