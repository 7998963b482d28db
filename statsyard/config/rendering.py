"""render_config: the effective settings as TOML, each value with its source.

What ``statsyard config`` prints; the output loads back with
:func:`~statsyard.config.load_config` to the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from statsyard.config.load import Config
from statsyard.config.sections import SECTIONS
from statsyard.forward.settings import ForwardSettings

__all__ = ["render_config"]


def _toml_value(value: Any) -> str:
    if value is None:
        return "0"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list) and all(isinstance(i, str) for i in value):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
        )
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, tuple):  # schema rules: (pattern, step seconds)
        rules = ", ".join(
            f"{{ pattern = {_toml_value(p)}, step = {_toml_value(s)} }}"
            for p, s in value
        )
        return f"[{rules}]"
    return repr(value)


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else _toml_value(key)


def render_config(
    config: Config, *, annotate: Callable[[str, str], str] | None = None
) -> str:
    """Render the configuration as TOML, each value followed by its source.

    The output loads back with :func:`load_config` to the same values.

    Args:
        config: what to render.
        annotate: ``(section, key) -> comment``; defaults to the value's source.
    """
    note = annotate or config.source
    lines: list[str] = []
    for section in SECTIONS:
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        rows = []
        for field in attrs.fields(SECTIONS[section]):
            value = config.value(section, field.name)
            text = f"{field.name} = {_toml_value(value)}"
            comment = note(section, field.name)
            if value is None:
                comment += "; 0 = off"
            rows.append((text, comment))
        width = max(len(text) for text, _ in rows)
        lines.extend(f"{text.ljust(width)}  # {comment}" for text, comment in rows)
    for settings in config.forward:
        lines.extend(["", "[[forward]]"])
        source = config.sources.get("forward", "default")
        defaults = {f.name: f.default for f in attrs.fields(ForwardSettings)}
        rows = [
            (f"{k} = {_toml_value(v)}", "default" if defaults[k] == v else source)
            for k, v in settings.rows()
        ]
        width = max(len(text) for text, _ in rows)
        lines.extend(f"{text.ljust(width)}  # {comment}" for text, comment in rows)
    return "\n".join(lines) + "\n"
