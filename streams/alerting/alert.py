"""An alert as subscribers see it on the ``alerts`` topic and in the ClickHouse ``alerts`` table.

The id is a hash of domain, rule, entity and the event that triggered it, so evaluating the
same event again (a replay after a crash) yields the same id, which ClickHouse collapses and
subscribers can deduplicate on.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from config.settings import DomainName
from streams.alerting.rules import Severity


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True)

    alert_id: str
    ts: datetime  # event time of the triggering result
    domain: DomainName
    entity: str
    rule: str
    severity: Severity
    evidence: dict[str, Any]  # event ids and window figures
    model_version: str  # of the model that scored the triggering result

    def row(self, written_at: datetime) -> dict[str, Any]:
        """The row of the ClickHouse ``alerts`` table (evidence as a JSON string)."""
        return {
            **self.model_dump(),
            "evidence": json.dumps(self.evidence, sort_keys=True),
            "written_at": written_at,
        }


def alert_id(domain: DomainName, rule: str, entity: str, event_id: str) -> str:
    identity = "\x1f".join((domain, rule, entity, event_id))
    return hashlib.sha256(identity.encode()).hexdigest()[:32]
