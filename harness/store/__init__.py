"""The results store (SQLite): row records (rows), the schema generated from them
(schema), and the database (database)."""
from harness.store.database import (
    DEFAULT_DB, FAILED_STATUSES, Merged, Run, Store, StoreError, StoredKeys, inspect, machine_fault, open_store,
)
from harness.store.rows import (
    KEY_COLUMNS, SHOWN_TIMING_COLUMNS, TIMING_COLUMNS, BadRow, CellKey, CellRow, GradientRow, Stored,
)
from harness.store.schema import SCHEMA_VERSION

__all__ = ["DEFAULT_DB", "FAILED_STATUSES", "KEY_COLUMNS", "Merged", "SCHEMA_VERSION", "SHOWN_TIMING_COLUMNS",
           "TIMING_COLUMNS", "BadRow", "CellKey", "CellRow", "GradientRow", "Run", "Store", "StoreError", "Stored",
           "StoredKeys", "inspect", "machine_fault", "open_store"]
