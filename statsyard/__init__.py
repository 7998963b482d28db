"""StatsYard: a small, supervised time-series engine built from Pykka actors."""

from __future__ import annotations

import logging

from statsyard.app import StatsYard
from statsyard.datapoint import DataPoint, Invalid, Valid, validate, validate_batch
from statsyard.exceptions import StatsYardError

__all__ = [
    "Counts",
    "DataPoint",
    "Invalid",
    "Registry",
    "Row",
    "StatsYard",
    "StatsYardError",
    "SupervisorExit",
    "Valid",
    "validate",
    "validate_batch",
    "validate_rows",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
