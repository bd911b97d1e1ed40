"""Explaining stored events in a worker, off the event loop (``models.serving.explanations``): the
events that trigger alerts, and those asked for at ``/explain?event_id=...``.

For the alerts of one fetch (``attach``), before they are published:

1. the triggering events' model inputs are looked up in the store (the text, or the reading),
   again for up to ``explanations.lookup_wait_s`` while the scoring worker's rows are still on
   their way (a scored result can reach its topic a moment before its rows are queryable);
2. each is explained in a process of its own at the lowest CPU priority, one at a time, and
   at most ``explanations.max_cpu_share`` of the time: after an explanation that took t
   seconds none starts for t * (1 / share - 1), and an alert met meanwhile is sent with
   ``explanation_error`` at once rather than wait (waiting would hold its fetch, and every
   alert after it). Explained with the version named by the alert, loaded once, toward the
   label the event was scored with, within ``explanations.budget_s`` for the fetch;
3. the explanations go to the ClickHouse ``explanations`` table, keyed by event id and model
   version (``ReplacingMergeTree``: a replay writes the same row again, which collapses), and
   the short form (the top words or columns for and against) goes into the alert's
   ``evidence["explanation"]``.

Explanations are deterministic, so a replayed alert carries the same evidence (unless the first
attempt could not explain it: then the replay's evidence, under the same alert id, replaces
it). An event that cannot be explained (not in the store in time, its version gone from the
registry, the budget spent, explaining over its share of the time, any failure of the
explainer) does not hold its alert back: the alert goes out with
``evidence["explanation_error"]`` saying why. An alert waits at most for an explanation
already under way (of another alert of its fetch, or of an ``/explain`` request). An
alerting-only worker on an embedded store never holds the scoring workers' events, so it does
not explain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import domains
from config.settings import DomainName, ExplanationSettings
from models.base import ModelInput
from models.errors import RegistryError
from models.registry import Registry
from store import queries
from store.readonly import ReadOnlyStore
from streams.alerting.alert import Alert
from streams.explainer_process import explain_in_process, start_explainer_process, warm_up
from streams.processor import Sink
from streams.stored_events import find_events

if TYPE_CHECKING:  # explaining runs in the explainer's process, which imports the runtimes
    from models.serving.explanations import Explanation

log = logging.getLogger(__name__)

EXPLANATIONS_TABLE = "explanations"
# The evidence keys of an alert's explanation, or of why it has none.
EXPLAINED, UNEXPLAINED = "explanation", "explanation_error"
Key = tuple[DomainName, str, str]  # domain, event id, model version


def explanation_row(
    domain: DomainName, event_id: str, version: str, explanation: Explanation, top_k: int
) -> dict[str, Any]:
    """The row of the ``explanations`` table."""
    return {
        "event_id": event_id,
        "domain": domain,
        "model_version": version,
        "label": explanation.label,
        "probability": explanation.probability,
        "method": explanation.method,
        "delta": explanation.delta,
        "short": explanation.short(top_k),
        "attributions": json.dumps(explanation.to_dict()["attributions"]),
        "explained_at": datetime.now(UTC),
    }


def explanation_outcome(alert: Alert) -> str:
    """``explained``, ``unexplained`` (the evidence says why) or ``not_asked`` (explanations
    off, or a worker that cannot read the scoring workers' events)."""
    if EXPLAINED in alert.evidence:
        return "explained"
    return "unexplained" if UNEXPLAINED in alert.evidence else "not_asked"


def explainer_pool() -> ProcessPoolExecutor:
    """The explainer process: started at the first explanation ("spawn": forking a threaded,
    running worker is unsafe); it imports the models once, a few seconds, and ends with the
    process that made the pool, however that ends."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_explainer_process,
        initargs=(os.getpid(),),
    )


class EventExplainer:
    """Explains stored, scored events with the version that scored them; see the module doc."""

    def __init__(
        self,
        settings: ExplanationSettings,
        registry: Registry,
        store: ReadOnlyStore,
        sink: Sink,
        max_seq_length: int,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.sink = sink
        self.max_seq_length = max_seq_length
        self._executor = explainer_pool()
        self._next_start = 0.0  # loop time before which no explanation starts (CPU share)

    async def attach(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The alerts with their explanations in the evidence (see the module doc)."""
        wanted = {(a.domain, a.evidence["trigger_event_id"], a.model_version) for a in alerts}
        explained, errors = await self.explain(
            wanted, self.settings.lookup_wait_s, self.settings.budget_s
        )
        top_k = self.settings.top_k
        out = []
        for alert in alerts:
            key = (alert.domain, alert.evidence["trigger_event_id"], alert.model_version)
            extra = (
                {EXPLAINED: explained[key].short(top_k)}
                if key in explained
                else {UNEXPLAINED: errors.get(key, "not explained")}
            )
            out.append(alert.model_copy(update={"evidence": {**alert.evidence, **extra}}))
        return out

    async def explain(
        self, wanted: set[Key], wait_s: float, budget_s: float, *, wait_for_turn: bool = False
    ) -> tuple[dict[Key, Explanation], dict[Key, str]]:
        """Explain the events named by (domain, event id, model version) toward the label
        they were scored with, and store the explanations; return them, and for the others
        why not. Whatever fails for one event is that event's error: an explanation never
        holds back what it explains. Events not reached within ``budget_s`` are not
        explained; without ``wait_for_turn``, neither are those met while explaining has had
        its ``max_cpu_share``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        over_share = f"over explanations.max_cpu_share ({self.settings.max_cpu_share:g})"

        def over_its_share() -> bool:
            # An alert does not wait for its turn (it would hold its fetch, and every alert
            # after it); a request does, within its budget.
            return self._next_start > (deadline if wait_for_turn else loop.time())

        if over_its_share():  # not even a lookup (a query in this process) then
            return {}, dict.fromkeys(wanted, over_share)
        inputs, errors = await self._inputs(wanted, min(wait_s, budget_s))
        explained: dict[Key, Explanation] = {}
        for key, (model_input, predicted) in inputs.items():
            if over_its_share():
                errors[key] = over_share
                continue
            await asyncio.sleep(max(0.0, self._next_start - loop.time()))
            if loop.time() >= deadline:
                errors[key] = f"not reached within explanations.budget_s ({budget_s:g} s)"
                continue
            started = loop.time()
            try:
                explained[key] = await asyncio.wait_for(
                    loop.run_in_executor(
                        self._executor,
                        explain_in_process,
                        str(self.registry.existing_version_dir(key[0], key[2])),
                        self.settings.steps,
                        self.max_seq_length,
                        model_input,
                        predicted,
                    ),
                    deadline - loop.time(),
                )
            except TimeoutError:
                errors[key] = f"not done within explanations.budget_s ({budget_s:g} s)"
            except BrokenProcessPool:
                log.warning("the explainer process died; starting another")
                self._executor = explainer_pool()
                errors[key] = "the explainer process died"
            except RegistryError as error:
                errors[key] = f"version {key[2]} cannot be loaded: {error}"
            except Exception as error:  # one event's failure is reported, never raised
                log.warning("explaining %s %s failed", key[0], key[1], exc_info=True)
                errors[key] = f"explaining failed: {type(error).__name__}: {error}"
            # None starts again before explaining has taken at most ``max_cpu_share`` of the
            # time (a budget of CPU time, spent in bursts of one explanation).
            took = loop.time() - started
            self._next_start = loop.time() + took * (1 / self.settings.max_cpu_share - 1)
        top_k = self.settings.top_k
        rows = [explanation_row(d, e, v, x, top_k) for (d, e, v), x in explained.items()]
        await self.sink.write(EXPLANATIONS_TABLE, rows)
        return explained, errors

    async def explain_event(self, event_id: str, domain: DomainName | None) -> dict[str, Any]:
        """Explain a scored event now (and store it): a JSON object with domain, event_id,
        model_version and the explanation, or with ``error``."""
        for name in [domain] if domain else domains.names():
            result = await self.store.query(queries.scored_version(name, event_id))
            if not result.rows:
                continue
            version = result.rows[0][0]
            key = (name, event_id, version)
            explained, errors = await self.explain(
                {key}, 0, self.settings.budget_s, wait_for_turn=True
            )
            head = {"domain": name, "event_id": event_id, "model_version": version}
            if key in explained:
                return {**head, **explained[key].to_dict()}
            return {**head, "error": errors[key]}
        return {"event_id": event_id, "error": "no scored event with this id in the store"}

    async def _inputs(
        self, wanted: set[Key], wait_s: float
    ) -> tuple[dict[Key, tuple[ModelInput, str]], dict[Key, str]]:
        """The model input and predicted label of each wanted event, and why the others have
        none."""
        lookup = await find_events(self.store, {(d, e) for d, e, _ in wanted}, wait_s)
        found: dict[Key, tuple[ModelInput, str]] = {}
        errors: dict[Key, str] = {}
        for key in wanted:
            event = lookup.found.get(key[:2])
            if event is not None:
                found[key] = (event.model_input, event.predicted_label)
            elif key[:2] in lookup.invalid:
                errors[key] = lookup.invalid[key[:2]]
            elif key[0] in lookup.errors:
                errors[key] = f"looking the event up failed: {lookup.errors[key[0]]}"
            else:
                errors[key] = "the event is not in the store"
        return found, errors

    def start(self) -> None:
        """Start the explainer process and load its libraries now, at the lowest priority,
        rather than at the first alert."""
        self._executor.submit(warm_up)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
