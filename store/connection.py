"""Connecting to ClickHouse: the embedded engine (chdb:///dir) or a server (http(s)://...)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

CHDB_SCHEME = "chdb://"
_OPENED_HERE: set[Path] = set()  # embedded stores this process has opened


class ClickHouseInUseError(RuntimeError):
    """Another process has the embedded ClickHouse directory open."""


def connect(dsn: str) -> Client:
    """Open a client for the DSN; the embedded engine's directory is created when missing.

    Only one process may open an embedded data directory at a time; opening one that another
    process holds raises ClickHouseInUseError.
    """
    if not dsn.startswith(CHDB_SCHEME):
        return clickhouse_connect.get_client(dsn=dsn)
    folder = Path(dsn.removeprefix(CHDB_SCHEME))
    folder.mkdir(parents=True, exist_ok=True)
    # Asked first, because the engine prints its own error line to the terminal when it
    # meets another process's lock (this process's own clients share the store, and its
    # lock); asked again after a failure, for a holder that came in between.
    if folder.resolve() not in _OPENED_HERE and _locked(folder / "status"):
        raise _in_use(folder)
    try:
        client = clickhouse_connect.get_client(dsn=dsn)
        _OPENED_HERE.add(folder.resolve())
        return client
    except Exception as error:
        # chdb only says "Error initializing EmbeddedServer"; the lock on its status file
        # tells whether another process is the reason.
        if _locked(folder / "status"):
            raise _in_use(folder) from error
        raise


def _in_use(folder: Path) -> ClickHouseInUseError:
    return ClickHouseInUseError(
        f"the embedded ClickHouse in {folder} is open in another process (a worker "
        "with the same SIGNALYARD_HOME?); stop it, or use a ClickHouse server "
        "(SIGNALYARD_CLICKHOUSE__DSN=http://...)"
    )


def _locked(status_file: Path) -> bool:
    try:
        handle = os.open(status_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)  # closing releases a lock taken here
    return False
