"""The registered domains, by name.

    import domains
    domains.get("news") -> Domain      # KeyError-free: UnknownDomainError names the known ones
    domains.names() -> tuple[str, ...]
    domains.all() -> tuple[Domain, ...]

Every module of this package (but ``base``) is a domain that registers itself when imported;
a domain of another package registers through the ``signalyard.domains`` entry point group
(``name = "package.module"``), so an industry's stream needs no fork of this tree.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points
from typing import Annotated

from pydantic import AfterValidator

from domains.base import Domain
from models.data import register_row_input

ENTRY_POINT_GROUP = "signalyard.domains"

_REGISTERED: dict[str, Domain] = {}


class UnknownDomainError(ValueError):
    """A domain name that no registered domain has; the message names the known ones."""


def register(domain: Domain) -> Domain:
    """Add ``domain`` to the registry (a domain module calls this once, at import)."""
    known = _REGISTERED.get(domain.name)
    if known is not None and known is not domain:
        raise ValueError(f"two domains are named {domain.name!r}")
    _REGISTERED[domain.name] = domain
    register_row_input(domain.name, domain.row_input if domain.labeled_columns else None)
    return domain


@cache
def _load() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry.value)


def all() -> tuple[Domain, ...]:
    """Every registered domain, in name order."""
    _load()
    return tuple(_REGISTERED[name] for name in sorted(_REGISTERED))


def names() -> tuple[str, ...]:
    return tuple(domain.name for domain in all())


def get(name: str) -> Domain:
    """The domain called ``name``; raises UnknownDomainError naming the known ones."""
    _load()
    try:
        return _REGISTERED[name]
    except KeyError:
        raise UnknownDomainError(
            f"unknown domain {name!r} (expected one of {', '.join(names())})"
        ) from None


def _registered(name: str) -> str:
    get(name)
    return name


# A field of a message that names a domain: only a registered one validates.
RegisteredName = Annotated[str, AfterValidator(_registered)]


# Every domain registers at import: models/ reads a domain's labeled rows through what the
# domain registered there (models.data.register_row_input) and may not import this package.
_load()
