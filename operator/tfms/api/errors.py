"""Errors about a TFModelService spec, each naming its field and rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class FieldError:
    """One broken rule: where (`spec.traffic[1].tag`), which rule, and the offending value."""

    path: str
    rule: str
    message: str
    value: Any = field(default=None, compare=False)

    def __str__(self) -> str:
        shown = "" if self.value is None else f" (got {_short(self.value)})"
        return f"{self.path}: {self.message} [{self.rule}]{shown}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SpecInvalid(Exception):
    """A spec that breaks one or more rules; carries all of them at once."""

    def __init__(self, errors: list[FieldError], source: str = "") -> None:
        self.errors = sorted(errors)
        self.source = source
        where = f"{source}: " if source else ""
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{where}{len(self.errors)} invalid field(s):\n{lines}")


class SettingInvalid(ValueError):
    """An operator-wide setting (a TFMS_* variable) that breaks the rule of the field it defaults.

    Checked where the setting is read, so a bad default is named once, with its variable,
    instead of passing validation and being rendered into every service."""
