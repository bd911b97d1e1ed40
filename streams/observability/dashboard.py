"""The dashboard page and its data: the panels' read-only queries (``store.panels``) over the
last minutes; the page (``dashboard.html``) draws whatever they return."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from importlib.resources import files
from typing import Any

import domains
from store.panels import PAGE_PANELS
from store.readonly import ReadOnlyStore


def charts() -> list[dict[str, Any]]:
    """Each domain's chart as the page draws it: the panel it reads, its title and axis."""
    return [
        {"panel": domain.name, **{k: v for k, v in asdict(domain.panel).items() if k != "sql"}}
        for domain in domains.all()
    ]


def page() -> str:
    """The dashboard page: one self-contained HTML file, nothing fetched from elsewhere."""
    return files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")


async def panel_data(store: ReadOnlyStore) -> dict[str, Any]:
    """Every panel's columns and rows, keyed by panel name."""
    results = await asyncio.gather(*(store.query(sql) for sql in PAGE_PANELS.values()))
    return {name: result.to_json() for name, result in zip(PAGE_PANELS, results, strict=True)}
