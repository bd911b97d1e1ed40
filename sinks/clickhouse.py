"""Connecting to ClickHouse: the embedded engine (chdb:///dir) or a server (http(s)://...)."""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

CHDB_SCHEME = "chdb://"


def connect(dsn: str) -> Client:
    """Open a client for the DSN; the embedded engine's directory is created when missing.

    Only one process may open an embedded data directory at a time.
    """
    if dsn.startswith(CHDB_SCHEME):
        Path(dsn.removeprefix(CHDB_SCHEME)).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn)
