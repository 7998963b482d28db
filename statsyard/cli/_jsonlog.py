"""One JSON object per log line, for log shippers (``--log-format json``).

Each line holds ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``,
``message`` (the %-args already merged), ``thread``, and, when present,
``extra`` (the structured fields a call passed with ``extra={...}``) and
``exception`` (the formatted traceback). Values JSON cannot hold are written
with ``repr()``; a line never holds a raw newline.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["JsonFormatter"]

# Every attribute a plain LogRecord has (plus what Formatter.format() adds):
# anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", None, None)),
        "message",
        "asctime",
        "taskName",
    }
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON: time, level, logger, message, thread, extra."""
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        extra = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        }
        if extra:
            entry["extra"] = extra
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=repr)
