"""Setting: what one setting accepts, how text parses into it, its attrs field.

A :class:`Setting` is a field's attrs converter (so building a section by
hand checks its values) and also parses the text of an environment variable
or a flag. :func:`setting_field` declares a section's field with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from statsyard.exceptions import ConfigError
from statsyard.timeparse import parse_duration_s

__all__ = ["BadValueError", "Setting", "setting_field"]

# DogStatsD's tag syntax (the same rule as statsyard.metrics): a key may not
# hold a colon, and | , # and whitespace separate fields and lines.
_TAG_KEY: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]*")
_TAG_VALUE: Final = re.compile(r"[^|,#\s]+")

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class BadValueError(Exception):
    """A value does not fit a setting; ``str()`` is what is expected.

    Internal to statsyard.config: it becomes a ConfigError problem.
    """


@attrs.frozen
class Setting:
    """What one setting accepts: its kind, range or choices.

    An instance is the field's attrs validator (so building a section by hand
    checks it too) and also parses text from the environment or a flag.

    Attributes:
        kind: one of ``str``, ``int``, ``float``, ``bool``, ``choice``,
            ``table`` (str to str), ``tags`` (a table of DogStatsD tags),
            ``list`` (of non-empty strings; from the
            environment or a flag, comma-separated), ``duration`` (seconds,
            from an int or ``"10s"``/``"1m"``/``"1h"``/``"1d"``), ``schema`` (a
            list of ``{pattern = REGEX, step = DURATION}`` tables).
        minimum: smallest allowed number (inclusive), if any.
        maximum: largest allowed number (inclusive), if any.
        above: numbers must be strictly greater than this, if set.
        choices: the allowed strings for ``choice``.
        off_when_zero: ``0`` (or an empty env value) means "off" and becomes None.
        help: one line for ``--help`` and the example file.
    """

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()
    off_when_zero: bool = False
    help: str = ""

    # -- description ------------------------------------------------------

    def expected(self) -> str:
        """Describe the accepted values, for error messages."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "table":
            return "a table of strings to strings"
        if self.kind == "tags":
            return (
                'tags: in a file a table like { env = "prod" }, in a flag or '
                "environment variable env=prod,team=ops; a key is a letter then "
                "letters, digits or _.-/, a value has no | , # or whitespace"
            )
        if self.kind == "list":
            return "a list of non-empty strings"
        if self.kind == "duration":
            return 'a positive duration: seconds, or e.g. "10s", "1m", "1h", "1d"'
        if self.kind == "schema":
            return (
                'a list of tables { pattern = "REGEX", step = "10s" } '
                "(from the environment: REGEX=STEP;REGEX=STEP)"
            )
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "a non-empty string"
        noun = "an integer" if self.kind == "int" else "a number"
        bounds = []
        if self.minimum is not None and self.maximum is not None:
            bounds.append(f"from {_fmt(self.minimum)} to {_fmt(self.maximum)}")
        elif self.above is not None:
            bounds.append(f"> {_fmt(self.above)}")
        elif self.minimum is not None:
            bounds.append(f">= {_fmt(self.minimum)}")
        elif self.maximum is not None:
            bounds.append(f"<= {_fmt(self.maximum)}")
        text = noun + (" " + bounds[0] if bounds else "")
        if self.off_when_zero:
            text += " (or 0 for off)"
        return text

    # -- checking ---------------------------------------------------------

    def check(self, value: Any) -> Any:
        """Return ``value`` normalised for this setting (from TOML or code).

        Raises:
            BadValueError: the value does not fit.
        """
        kind = self.kind
        if kind == "str":
            if not isinstance(value, str) or not value:
                raise BadValueError(self.expected())
            return value
        if kind == "choice":
            if not isinstance(value, str):
                raise BadValueError(self.expected())
            for choice in self.choices:
                if value.lower() == choice.lower():
                    return choice
            raise BadValueError(self.expected())
        if kind == "bool":
            if not isinstance(value, bool):
                raise BadValueError(self.expected())
            return value
        if kind in ("table", "tags"):
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and k and isinstance(v, str)
                for k, v in value.items()
            ):
                raise BadValueError(self.expected())
            if kind == "tags" and not all(
                _TAG_KEY.fullmatch(k) and _TAG_VALUE.fullmatch(v)
                for k, v in value.items()
            ):
                raise BadValueError(self.expected())
            return dict(sorted(value.items()))
        if kind == "list":
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise BadValueError(self.expected())
            if not all(isinstance(item, str) and item.strip() for item in value):
                raise BadValueError(self.expected())
            return tuple(item.strip() for item in value)
        if kind == "duration":
            return _duration(value, self.expected())
        if kind == "schema":
            return _schema(value, self.expected())
        if value is None and self.off_when_zero:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadValueError(self.expected())
        if kind == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise BadValueError(self.expected())
                value = int(value)
        else:
            if not math.isfinite(value):
                raise BadValueError(self.expected())
            value = float(value)
        if self.off_when_zero and value == 0:
            return None
        if (
            (self.above is not None and not value > self.above)
            or (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
        ):
            raise BadValueError(self.expected())
        return value

    def parse(self, text: str) -> Any:
        """Turn text from an environment variable or a flag into a checked value.

        Raises:
            BadValueError: the text does not parse or the value does not fit.
        """
        kind = self.kind
        stripped = text.strip()
        if kind in ("str", "choice"):
            return self.check(stripped)
        if kind == "bool":
            lowered = stripped.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise BadValueError(self.expected() + " (or 1/0, yes/no, on/off)")
        if kind in ("table", "tags"):
            table: dict[str, str] = {}
            for item in filter(None, (part.strip() for part in stripped.split(","))):
                key, sep, val = item.partition("=")
                if not sep or not key.strip():
                    raise BadValueError(
                        self.expected()
                        if kind == "tags"
                        else "comma-separated key=value pairs"
                    )
                table[key.strip()] = val.strip()
            return self.check(table)
        if kind == "list":
            return self.check([p.strip() for p in stripped.split(",") if p.strip()])
        if kind == "duration":
            return self.check(int(stripped) if stripped.isdigit() else stripped)
        if kind == "schema":
            rules = []
            for item in filter(None, (part.strip() for part in stripped.split(";"))):
                pattern, sep, step = item.rpartition("=")
                if not sep or not pattern:
                    raise BadValueError(self.expected())
                rules.append({"pattern": pattern, "step": step})
            return self.check(rules)
        if self.off_when_zero and stripped.lower() in ("", "off", "none", "null"):
            return None
        try:
            number: float = (
                int(stripped.replace("_", ""), 10) if kind == "int" else float(stripped)
            )
        except ValueError:
            raise BadValueError(self.expected()) from None
        return self.check(number)

    def convert(self, value: Any, field: attrs.Attribute[Any]) -> Any:
        """attrs converter: normalise a value built by hand, or refuse it."""
        try:
            return self.check(value)
        except BadValueError as bad:
            raise ConfigError(
                [f"{field.name}: expected {bad}, got {value!r}"]
            ) from None


def _duration(value: Any, expected: str) -> int:
    """Seconds of a duration setting (an int, or text such as ``"1m"``)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadValueError(expected)
    try:
        seconds = parse_duration_s(value)
    except ValueError:
        raise BadValueError(expected) from None
    return seconds


def _schema(value: Any, expected: str) -> tuple[tuple[str, int], ...]:
    """``(pattern, step seconds)`` rules of a schema setting, checked."""
    if isinstance(value, tuple):
        value = [{"pattern": p, "step": s} for p, s in value]
    if not isinstance(value, list):
        raise BadValueError(expected)
    rules = []
    for rule in value:
        if not isinstance(rule, Mapping) or set(rule) != {"pattern", "step"}:
            raise BadValueError(expected)
        pattern = rule["pattern"]
        if not isinstance(pattern, str) or not pattern:
            raise BadValueError(expected)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise BadValueError(f"{expected}; bad regex {pattern!r}: {exc}") from None
        rules.append((pattern, _duration(rule["step"], expected)))
    return tuple(rules)


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def setting_field(default: Any, setting: Setting) -> Any:
    """An attrs field that ``setting`` normalises and checks."""
    converter = attrs.Converter(setting.convert, takes_field=True)
    if isinstance(default, dict | list):
        return attrs.field(
            factory=lambda: type(default)(default),
            converter=converter,
            metadata={"setting": setting},
        )
    return attrs.field(
        default=default, converter=converter, metadata={"setting": setting}
    )
