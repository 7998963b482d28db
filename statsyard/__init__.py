"""StatsYard: a small, supervised time-series engine built from Pykka actors.

What an embedding application needs, and nothing else: the facade
(:class:`StatsYard`), its settings tree (:class:`Config` and its sections),
points (:class:`DataPoint`, :func:`validate`), what it reports
(:class:`Counts`, :class:`SupervisorExit`, :class:`QueryResult`), reading a
data directory (:class:`Storage`), extra supervised children
(:class:`ChildSpec`, :class:`ChildActor`), the metrics registry, and the
errors a caller catches, all under :class:`StatsYardError`.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statsyard.app import StatsYard
    from statsyard.config import (
        Config,
        GraphiteConfig,
        HttpConfig,
        LoggingConfig,
        MetricsConfig,
        PipelineConfig,
        RenderConfig,
        StorageConfig,
    )
    from statsyard.datapoint import DataPoint, validate
    from statsyard.exceptions import (
        ChildStartError,
        ConfigError,
        CorruptRecordError,
        DataDirectoryInUseError,
        FlushTimeout,
        InvalidArgumentError,
        MetricError,
        NotADataDirectoryError,
        NotRunningError,
        QueueClosedError,
        QueueTimeout,
        StatsYardError,
        StatsYardTimeoutError,
        WriteError,
    )
    from statsyard.forward import ForwardSettings
    from statsyard.metrics import Registry
    from statsyard.pipeline.ledger import Counts
    from statsyard.storage import QueryResult, Storage
    from statsyard.supervision import (
        ChildActor,
        ChildSpec,
        StartContext,
        SupervisorExit,
    )

# Where each public name lives. ``import statsyard`` loads none of them: a
# name's module is imported the first time it is looked up (PEP 562), so a
# command or an embedding application pays only for what it uses (issue 13).
_LOCATIONS: dict[str, str] = {
    "ChildActor": "statsyard.supervision",
    "ChildSpec": "statsyard.supervision",
    "ChildStartError": "statsyard.exceptions",
    "Config": "statsyard.config",
    "ConfigError": "statsyard.exceptions",
    "CorruptRecordError": "statsyard.exceptions",
    "Counts": "statsyard.pipeline.ledger",
    "DataDirectoryInUseError": "statsyard.exceptions",
    "DataPoint": "statsyard.datapoint",
    "FlushTimeout": "statsyard.exceptions",
    "ForwardSettings": "statsyard.forward",
    "GraphiteConfig": "statsyard.config",
    "HttpConfig": "statsyard.config",
    "InvalidArgumentError": "statsyard.exceptions",
    "LoggingConfig": "statsyard.config",
    "MetricError": "statsyard.exceptions",
    "MetricsConfig": "statsyard.config",
    "NotADataDirectoryError": "statsyard.exceptions",
    "NotRunningError": "statsyard.exceptions",
    "PipelineConfig": "statsyard.config",
    "QueryResult": "statsyard.storage",
    "QueueClosedError": "statsyard.exceptions",
    "QueueTimeout": "statsyard.exceptions",
    "Registry": "statsyard.metrics",
    "RenderConfig": "statsyard.config",
    "StartContext": "statsyard.supervision",
    "StatsYard": "statsyard.app",
    "StatsYardError": "statsyard.exceptions",
    "StatsYardTimeoutError": "statsyard.exceptions",
    "Storage": "statsyard.storage",
    "StorageConfig": "statsyard.config",
    "SupervisorExit": "statsyard.supervision",
    "WriteError": "statsyard.exceptions",
    "validate": "statsyard.datapoint",
}

__all__ = [
    "ChildActor",
    "ChildSpec",
    "ChildStartError",
    "Config",
    "ConfigError",
    "CorruptRecordError",
    "Counts",
    "DataDirectoryInUseError",
    "DataPoint",
    "FlushTimeout",
    "ForwardSettings",
    "GraphiteConfig",
    "HttpConfig",
    "InvalidArgumentError",
    "LoggingConfig",
    "MetricError",
    "MetricsConfig",
    "NotADataDirectoryError",
    "NotRunningError",
    "PipelineConfig",
    "QueryResult",
    "QueueClosedError",
    "QueueTimeout",
    "Registry",
    "RenderConfig",
    "StartContext",
    "StatsYard",
    "StatsYardError",
    "StatsYardTimeoutError",
    "Storage",
    "StorageConfig",
    "SupervisorExit",
    "WriteError",
    "validate",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines the public ``name`` on first use."""
    try:
        module = _LOCATIONS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API, as for an eagerly imported package."""
    return sorted(set(globals()) | set(__all__))


logging.getLogger(__name__).addHandler(logging.NullHandler())
