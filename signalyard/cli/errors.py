"""The errors a user can cause or fix, and how the CLI reports them: one line, non-zero exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from config.settings import SettingsError
from models.errors import DataError, EncoderFetchError, RegistryError
from signalyard.local.local_kafka import StackError
from store.connection import ClickHouseInUseError

USER_ERRORS: tuple[type[Exception], ...] = (
    SettingsError,
    StackError,
    FileNotFoundError,
    RegistryError,  # and its ModelNotFoundError
    DataError,
    EncoderFetchError,
    ClickHouseInUseError,
    click.ClickException,  # a command's own one-line error
)


def fail(message: str, code: int = 1) -> NoReturn:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"signalyard: error: {first_line}", file=sys.stderr)
    sys.exit(code)
