"""One container as a host process group: spawn, log capture, exit watching, teardown.

Each container gets its own session (so one `killpg` reaches whatever it forked) and, on
Linux, PR_SET_PDEATHSIG so it dies with us even if we are SIGKILLed. Exit is watched
through a pidfd on the event loop (no thread per child); where pidfds are missing we poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 64 * 1024

# The child sets PR_SET_PDEATHSIG itself, then execs the container's command. A `preexec_fn`
# would do it in Python between fork and exec, which forces a plain fork(): in a process with
# gRPC threads its fork handlers then run in the child and crash it now and then (SIGSEGV
# before exec, "Kick failed: eventfd_write"). Without preexec_fn the spawn is vfork+exec.
_DEATHSIG_EXEC = r"""
import ctypes, os, signal, sys
parent = int(sys.argv[1])
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:  # as a container runtime says it: the command, then why
    sys.stderr.write(f"exec {sys.argv[2]}: {exc.strerror}\n")
    os._exit(127)
"""


def with_deathsig(argv: Sequence[str]) -> list[str]:
    """`argv`, run so that it dies with this process (even if this one is SIGKILLed)."""
    return [sys.executable, "-I", "-S", "-c", _DEATHSIG_EXEC, str(os.getpid()), *argv]


class ContainerProcess:
    """A started container; create with `start()` from the loop that will watch it."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, log_offset: int) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.log_path = log_path
        self._log_offset = log_offset
        self._loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._watch()

    @classmethod
    def start(cls, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path) -> ContainerProcess:
        """Spawn `argv` with stdout+stderr appended to `log_path`. Raises OSError."""
        with log_path.open("ab") as log_file:
            offset = log_file.tell()
            proc = subprocess.Popen(
                with_deathsig(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(proc, log_path, offset)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def _watch(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._poller = self._loop.create_task(self._poll())
            return
        self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        code = self._proc.poll()
        if code is None:
            return
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        # Sweep anything the container forked and left behind in its session.
        self.signal_group(signal.SIGKILL)
        if not self.exited.done():
            self.exited.set_result(code)

    async def _poll(self) -> None:
        while not self.exited.done():
            self._reap()
            await asyncio.sleep(0.05)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM the group, wait up to `grace_s`, then SIGKILL; returns the exit code."""
        if not self.exited.done():
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), grace_s)
            except TimeoutError:
                log.warning("container pid %d ignored SIGTERM for %.1fs; killing it", self.pid, grace_s)
                self.signal_group(signal.SIGKILL)
                await self.exited
        return self.exited.result()

    def kill_now(self) -> None:
        """Last resort once the watching loop is gone: SIGKILL the group and reap."""
        if self._proc.returncode is None:
            self.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(2.0)
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines this run wrote (earlier runs of the revision excluded)."""
        try:
            with self.log_path.open("rb") as f:
                end = f.seek(0, os.SEEK_END)
                start = max(self._log_offset, end - _LOG_TAIL_BYTES)
                f.seek(start)
                data = f.read()
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])
