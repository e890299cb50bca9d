"""Headless Chromium driven over the DevTools protocol, to look at pages that draw themselves with JS.

`--dump-dom` snapshots the page once it has loaded, before its fetches have answered; here we
evaluate a condition in the page until it holds (or time runs out) and then take the DOM, so
tests wait on what the page shows rather than on a sleep. Chromium comes from Debian's
`chromium` package (`scripts/chromium.sh` installs it; `TFMS_CHROMIUM` names another binary).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")


def chromium_binary() -> str:
    """The browser to run; fails (never skips) with how to get one."""
    named = os.environ.get("TFMS_CHROMIUM")
    found = named or next((path for name in CANDIDATES if (path := shutil.which(name))), None)
    if not found:
        pytest.fail("no Chromium found (tried $TFMS_CHROMIUM and " + ", ".join(CANDIDATES) + "); "
                    "install Debian's package with `bash scripts/chromium.sh` (as root) or set TFMS_CHROMIUM",
                    pytrace=False)
    return found


class Page:
    """One page target: `evaluate` JS, `wait_for` a JS condition, `html` of the live DOM."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads(await self._ws.receive_str())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, condition: str, timeout: float) -> None:
        """Until the JS `condition` is truthy (one that throws, on a page still loading, is not yet);
        fails with the page's text when it never is."""
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return Boolean({condition}); }} catch {{ return false; }} }})()"
        while not await self.evaluate(guarded):
            if time.monotonic() > deadline:
                text = await self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(f"{condition} did not hold within {timeout}s; the page shows:\n{text}")
            await asyncio.sleep(0.2)  # a poll interval between evaluations, not a wait for an outcome

    async def html(self) -> str:
        return str(await self.evaluate("document.documentElement.outerHTML"))


async def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Chromium writes the port it chose to DevToolsActivePort in its profile."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not (marker.exists() and marker.read_text().strip()):
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited with {proc.returncode} before opening DevTools")
        if time.monotonic() > deadline:
            raise AssertionError(f"chromium did not open DevTools within {timeout}s")
        await asyncio.sleep(0.1)
    return int(marker.read_text().split()[0])


@contextlib.asynccontextmanager
async def open_page(url: str, timeout: float = 60) -> AsyncIterator[Page]:
    """Headless Chromium showing `url`; the browser and its profile are gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="tfms-chromium-") as profile:
        proc = subprocess.Popen(
            [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            port = await _devtools_port(Path(profile), proc, timeout)
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + timeout
                while True:  # the page target appears once the URL starts loading
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                        targets = await resp.json()
                    pages = [t for t in targets if t.get("type") == "page" and t.get("url", "").startswith(url)]
                    if pages:
                        break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no page for {url} in chromium's targets: {targets}")
                    await asyncio.sleep(0.1)
                async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    yield Page(ws)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
