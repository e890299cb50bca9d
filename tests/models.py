"""Third-party models fetched at test time into a cache (nothing third-party is committed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

BASIC_PITCH = "basic-pitch==0.4.0"
_SAVED_MODEL = "basic_pitch/saved_models/icassp_2022/nmp/"


def cache_dir() -> Path:
    return Path(os.environ.get("TFMS_TEST_CACHE", Path.home() / ".cache" / "tfms-tests"))


def basic_pitch_model_dir() -> Path:
    """A model base path whose version 1 is basic-pitch's SavedModel, from PyPI (--no-deps)."""
    root = cache_dir() / "basic_pitch"
    version = root / "1"
    if (version / "saved_model.pb").exists():
        return root
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("basic_pitch-0.4.0-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
                        BASIC_PITCH], check=True, timeout=600)
    wheel = next(wheels.glob("basic_pitch-0.4.0-*.whl"))
    staging = root.with_name("basic_pitch.partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(_SAVED_MODEL) and not member.endswith("/"):
                target = staging / "1" / member[len(_SAVED_MODEL):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root
