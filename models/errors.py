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


class EncoderFetchError(Exception):
    """An encoder could not be fetched or assembled; the message says why in one line."""
