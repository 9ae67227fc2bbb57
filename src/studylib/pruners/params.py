"""Typed, validated pruner parameters (:class:`Param`) and the error every bad pruner
configuration raises (:class:`PrunerConfigError`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class PrunerConfigError(ValueError):
    """Unknown pruner name, unknown parameter or invalid parameter value."""


_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


def _format_float(x: float) -> str:
    text = repr(float(x))
    if text.endswith(".0"):
        text = text[:-2]
    return text


@dataclass(frozen=True)
class Param:
    """One typed, validated parameter of a pruner.

    ``kind`` is ``int``, ``float``, ``bool`` or ``str`` (``str`` requires ``choices``).  Numeric
    bounds: ``low``/``high`` (inclusive unless ``low_open``/``high_open``).  ``alias`` is the short
    name used in spec strings (the full name is accepted too).  ``key`` parameters are always
    shown in the canonical spec.
    """

    name: str
    kind: type
    default: Any
    doc: str = ""
    alias: str | None = None
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    key: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _TYPE_NAMES:
            raise TypeError(f"parameter {self.name}: unsupported type {self.kind}")
        if self.kind is str and not self.choices:
            raise TypeError(f"parameter {self.name}: str parameters need choices")
        object.__setattr__(self, "default", self.coerce(self.default, "<definition>"))

    @property
    def spec_name(self) -> str:
        return self.alias or self.name

    def describe(self) -> str:
        """``name (alias) : type = default, range/choices``."""
        alias = f" ({self.alias})" if self.alias else ""
        text = f"{self.name}{alias}: {_TYPE_NAMES[self.kind]} = {self.format(self.default)}"
        if self.choices:
            text += f", one of {{{', '.join(self.choices)}}}"
        elif self.low is not None or self.high is not None:
            lo = "(" if self.low_open or self.low is None else "["
            hi = ")" if self.high_open or self.high is None else "]"
            lo_v = "-inf" if self.low is None else _format_float(self.low)
            hi_v = "inf" if self.high is None else _format_float(self.high)
            text += f", in {lo}{lo_v}, {hi_v}{hi}"
        return text

    def format(self, value: Any) -> str:
        if self.kind is bool:
            return "true" if value else "false"
        if self.kind is float:
            return _format_float(value)
        return str(value)

    def coerce(self, value: Any, pruner: str) -> Any:
        """Convert ``value`` (a Python value or the text of a spec) to the parameter's type."""
        bad = PrunerConfigError(
            f"{pruner}: invalid value {value!r} for parameter {self.describe()}"
        )
        kind = self.kind
        if isinstance(value, str) and kind is not str:
            text = value.strip().lower()
            try:
                if kind is bool:
                    if text in ("true", "1", "yes"):
                        value = True
                    elif text in ("false", "0", "no"):
                        value = False
                    else:
                        raise ValueError
                elif kind is int:
                    value = int(text)
                else:
                    value = float(text)
            except ValueError:
                raise bad from None
        if kind is bool:
            if not isinstance(value, bool):
                if isinstance(value, (int, float)) and value in (0, 1):
                    value = bool(value)
                else:
                    raise bad
        elif kind is int:
            if isinstance(value, bool):
                raise bad
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad
                value = int(value)
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise bad from None
        elif kind is float:
            if isinstance(value, bool):
                raise bad
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise bad from None
            if not math.isfinite(value):
                raise bad
        else:
            if not isinstance(value, str):
                raise bad
            value = value.strip()
            if value not in self.choices:  # type: ignore[operator]
                raise bad
        if kind in (int, float):
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                raise bad
            if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
                raise bad
        return value


__all__ = ["Param", "PrunerConfigError"]
