"""Local mode of the emulator: revisions run as real processes behind a loopback router.

`LocalExecutor` implements `tfms.emulator.executor.Executor`; `Router` is usable alone.
"""

from tfms.emulator.local.executor import LocalExecutor, LocalRevisionStatus
from tfms.emulator.local.router import REVISION_HEADER, Router, swrr_schedule

__all__ = ["REVISION_HEADER", "LocalExecutor", "LocalRevisionStatus", "Router", "swrr_schedule"]
