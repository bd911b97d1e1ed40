"""Errors a user can cause or fix around models; the CLI reports each as one line.

This module imports nothing heavy so that the CLI can name these classes without loading torch.
"""

from __future__ import annotations


class DataError(ValueError):
    """A training or evaluation file is empty, lacks a column or holds an unknown label."""


class RegistryError(Exception):
    """A registry operation cannot be done: unknown version, nothing to roll back to."""


class ModelNotFoundError(RegistryError):
    """A domain has no live model, or a model folder is missing or incomplete."""


class BrokenModelError(ModelNotFoundError):
    """A model folder's files do not make the model it describes: bytes changed since it was
    registered (truncated, overwritten), or a config that does not match its weights."""


class EncoderFetchError(Exception):
    """An encoder could not be fetched or assembled; the message says why in one line."""


def one_line(error: BaseException) -> str:
    """An error as one short line: its kind and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"
