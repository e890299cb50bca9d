#!/usr/bin/env bash
# Make sure a headless Chromium is there for the status page test (tests/e2e/test_status_page.py):
# Debian's `chromium` package, installed with apt when missing (needs root, or passwordless sudo).
# Idempotent: exits at once when chromium (or $TFMS_CHROMIUM) is already there.
set -euo pipefail

if [ -n "${TFMS_CHROMIUM:-}" ] && [ -x "$TFMS_CHROMIUM" ]; then exit 0; fi
for name in chromium chromium-headless-shell; do
    if command -v "$name" >/dev/null; then exit 0; fi
done

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "[chromium] not installed and not root: run 'apt-get install chromium' as root," \
             "or set TFMS_CHROMIUM to a Chromium binary" >&2
        exit 1
    fi
fi
command -v apt-get >/dev/null || { echo "[chromium] apt-get not found; set TFMS_CHROMIUM" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show chromium >/dev/null 2>&1; then
    echo "[chromium] apt-get update"
    "${SUDO[@]}" apt-get update -qq
fi
echo "[chromium] apt-get install chromium"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version
