"""Graphite templates: map a plain dotted path to a metric and an entity.

collectd, Diamond and telegraf send paths such as
``collectd.web1.cpu-0.cpu-idle`` with the host inside the path. A template
rule, in the spirit of InfluxDB's Graphite templates, says which parts of
the path are the entity::

    "collectd.* metric.entity.metric*"

A rule is ``"FILTER TEMPLATE"`` or just ``"TEMPLATE"`` (matches every path):

- **FILTER** is a dotted pattern matched against the first parts of the
  path, part by part; each part is a glob (``*``, ``?``, ``[...]``). So
  ``collectd.*`` matches every path with ``collectd`` first and at least two
  parts. The first rule whose filter matches is used.
- **TEMPLATE** names each part of the path in order: ``metric`` (kept in the
  metric name), ``entity`` (becomes the entity; several are joined with
  ``.``) or empty (the part is dropped). A last ``metric*`` takes every
  remaining part into the metric; without it, parts beyond the template are
  dropped.

With the rule above, ``collectd.web1.cpu-0.cpu-idle`` becomes metric
``collectd.cpu-0.cpu-idle`` and entity ``web1``. A path that no rule
matches is kept as it is, with the default entity.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Final

import attrs

from statsyard.exceptions import ConfigError

__all__ = ["Template", "TemplateSet", "compile_templates"]

METRIC: Final = "metric"
ENTITY: Final = "entity"
REST: Final = "metric*"

_PART: Final = re.compile(r"[^\s.]+")


@attrs.frozen
class Template:
    """One compiled ``"FILTER TEMPLATE"`` rule.

    Attributes:
        rule: the rule as written.
        filter: one compiled glob per leading path part (empty: matches all).
        parts: ``metric``, ``entity`` or ``""`` for each path part.
        rest: a last ``metric*`` keeps the remaining parts in the metric.
    """

    rule: str
    filter: tuple[re.Pattern[str], ...]
    parts: tuple[str, ...]
    rest: bool

    def matches(self, parts: Sequence[str]) -> bool:
        """Whether the filter matches the first parts of a split path."""
        if len(parts) < len(self.filter):
            return False
        return all(
            glob.fullmatch(part) for glob, part in zip(self.filter, parts, strict=False)
        )

    def apply(self, parts: Sequence[str]) -> tuple[str, str]:
        """``(metric, entity)`` of a split path; either may be ``""`` (none)."""
        metric: list[str] = []
        entity: list[str] = []
        for role, part in zip(self.parts, parts, strict=False):
            if role == METRIC:
                metric.append(part)
            elif role == ENTITY:
                entity.append(part)
        if self.rest:
            metric.extend(parts[len(self.parts) :])
        return ".".join(metric), ".".join(entity)


@attrs.frozen
class TemplateSet:
    """Compiled rules; :meth:`resolve` uses the first whose filter matches."""

    templates: tuple[Template, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.templates)

    def resolve(self, path: str) -> tuple[str, str] | None:
        """``(metric, entity)`` for a plain path, or None when no rule matches.

        ``entity`` is ``""`` when the rule names no entity part in this path.
        """
        parts = path.split(".")
        for template in self.templates:
            if template.matches(parts):
                return template.apply(parts)
        return None


def _compile_rule(rule: str) -> Template:
    """Compile one rule, or raise ValueError saying what is wrong with it."""
    fields = rule.split()
    if len(fields) == 1:
        filter_text, template_text = "", fields[0]
    elif len(fields) == 2:
        filter_text, template_text = fields
    else:
        raise ValueError(
            f"expected 'FILTER TEMPLATE' or 'TEMPLATE', got {len(fields)} fields"
        )
    globs: list[re.Pattern[str]] = []
    if filter_text:
        for part in filter_text.split("."):
            if not _PART.fullmatch(part):
                raise ValueError(f"filter {filter_text!r} has an empty part")
            globs.append(re.compile(fnmatch.translate(part)))
    roles = template_text.split(".")
    rest = roles[-1] == REST
    if rest:
        roles = roles[:-1]
    for role in roles:
        if role not in (METRIC, ENTITY, ""):
            where = "only last" if role == REST else "not a template part"
            raise ValueError(
                f"{role!r} is {where}; parts are 'metric', 'entity', '' "
                "(dropped) and a last 'metric*'"
            )
    if not rest and METRIC not in roles:
        raise ValueError(f"template {template_text!r} names no 'metric' part")
    return Template(rule=rule, filter=tuple(globs), parts=tuple(roles), rest=rest)


def compile_templates(rules: Sequence[str]) -> TemplateSet:
    """Compile ``[graphite] templates``.

    Raises:
        ConfigError: one problem per bad rule, naming it and what is wrong.
    """
    compiled: list[Template] = []
    problems: list[str] = []
    for index, rule in enumerate(rules):
        try:
            compiled.append(_compile_rule(rule))
        except ValueError as error:
            problems.append(f"graphite.templates[{index}] {rule!r}: {error}")
    if problems:
        raise ConfigError(problems)
    return TemplateSet(tuple(compiled))
