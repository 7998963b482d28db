"""Durable storage of data points: write-ahead log, compacted segments, queries.

The on-disk format is documented in ``docs/storage.md``. Other packages use
only what this module exports; the ``_underscore`` modules are its own.
"""

from __future__ import annotations

from statsyard.storage._batch import (
    BATCH_HEADER,
    BATCH_KINDS,
    KIND_BATCH,
    KIND_BATCH_ZSTD,
    Batch,
    Value,
    batch_payload,
    decode_batch,
    decode_batch_record,
)
from statsyard.storage._files import (
    INDEX_PATTERN,
    MARKER_NAME,
    MAX_FILE_BYTES,
    SEGMENT_PATTERN,
    WAL_PATTERN,
    DamagedFileError,
    numbered,
    open_regular,
    wal_name,
)
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    WAL_MAGIC,
    ScanResult,
    check_file_header,
    scan_file,
    scan_records,
)
from statsyard.storage._log_watch import LogEnd, LogRetention
from statsyard.storage._query import AGGREGATES
from statsyard.storage._reader import QueryResult
from statsyard.storage._storage import (
    DEFAULT_CHECKPOINT_POINTS,
    DEFAULT_SEGMENT_BYTES,
    Storage,
)

__all__ = [
    "AGGREGATES",
    "BATCH_HEADER",
    "BATCH_KINDS",
    "DEFAULT_CHECKPOINT_POINTS",
    "DEFAULT_SEGMENT_BYTES",
    "FILE_HEADER_SIZE",
    "INDEX_PATTERN",
    "KIND_BATCH",
    "KIND_BATCH_ZSTD",
    "MARKER_NAME",
    "MAX_FILE_BYTES",
    "SEGMENT_PATTERN",
    "WAL_MAGIC",
    "WAL_PATTERN",
    "Batch",
    "DamagedFileError",
    "LogEnd",
    "LogRetention",
    "QueryResult",
    "ScanResult",
    "Storage",
    "Value",
    "batch_payload",
    "check_file_header",
    "decode_batch",
    "decode_batch_record",
    "numbered",
    "open_regular",
    "scan_file",
    "scan_records",
    "wal_name",
]
