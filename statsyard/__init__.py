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

import logging

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
from statsyard.supervision import ChildActor, ChildSpec, StartContext, SupervisorExit

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

logging.getLogger(__name__).addHandler(logging.NullHandler())
