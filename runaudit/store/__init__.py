"""The DuckDB file: :mod:`runaudit.store.database` opens it safely and runs queries (polars frames, Arrow);
:mod:`runaudit.store.schema` owns the tables and their migrations.

Only this package catches ``duckdb.Error``; everything above it sees :class:`~runaudit.errors.StoreError`.
"""

from runaudit.store.database import (
    BIG_LINE_BYTES,
    DEFAULT_DB,
    MEMORY_LIMIT,
    PARSE_MEMORY_LIMIT,
    Store,
    arrow_table,
    default_db_path,
    quote_ident,
)
from runaudit.store.schema import SCHEMA_VERSION

__all__ = ["Store", "arrow_table", "default_db_path", "quote_ident", "DEFAULT_DB", "MEMORY_LIMIT",
           "PARSE_MEMORY_LIMIT", "BIG_LINE_BYTES", "SCHEMA_VERSION"]
