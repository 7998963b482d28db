"""StatsYard: a small, supervised time-series engine built from Pykka actors."""

from __future__ import annotations

import logging

from statsyard.app import StatsYard
from statsyard.datapoint import (
    DataPoint,
    Invalid,
    Row,
    Valid,
    validate,
    validate_batch,
    validate_rows,
)
from statsyard.exceptions import (
    ChildStartError,
    DataDirectoryInUseError,
    FlushTimeout,
    NotADataDirectoryError,
    NotRunningError,
    QueueClosedError,
    QueueTimeout,
    StatsYardError,
    StatsYardTimeoutError,
)
from statsyard.ledger import Counts
from statsyard.metrics import Registry
from statsyard.supervisor import SupervisorExit

__all__ = [
    "ChildStartError",
    "Counts",
    "DataDirectoryInUseError",
    "DataPoint",
    "FlushTimeout",
    "Invalid",
    "NotADataDirectoryError",
    "NotRunningError",
    "QueueClosedError",
    "QueueTimeout",
    "Registry",
    "Row",
    "StatsYard",
    "StatsYardError",
    "StatsYardTimeoutError",
    "SupervisorExit",
    "Valid",
    "validate",
    "validate_batch",
    "validate_rows",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
