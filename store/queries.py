"""The project's own reads of the store, as SQL: each function returns one read-only statement
for ``ReadOnlyStore.query`` or ``readonly.query_store``. Values are quoted here
(``sql_string``, ``sql_list``), never by the caller.

Stored events
    stored_events(domain, event_ids)       # events joined to their live scores
    unlabeled_events(domain, limit)        # the newest events no label names
    stored_event_ids(domain, event_ids)    # which of these events are stored
    scored_version(domain, event_id)       # the version that scored one event
Feedback
    labeled_events(domain)                 # each labeled event once, latest label
    labeled_count(domain)                  # distinct labeled events
    labels_of_runs(domain, run_ids)        # latest label of each event of backtest runs
Retrain triggers
    last_trigger(domain)                   # when the last one fired, at what label count
    recent_predictions(domain, window)     # predicted classes of the newest scores
    recent_confidence(domain, version, window)
Backtest runs
    backtest_run(run_id)
    run_results(domain, run_id)            # a run's results
    live_results_of_run(domain, run_id)    # the live results of a run's events

The columns of ``stored_events`` and ``unlabeled_events`` are named as the event schema's
fields (``Domain.stored_fields``), so a row parses back into the event it came from.
"""

from __future__ import annotations

from collections.abc import Sequence

import domains
from store.backtest_runs import RUNS_TABLE, scores_table
from store.readonly import sql_list, sql_string
from store.schema import TRIGGERS_TABLE


def stored_events(domain: str, event_ids: Sequence[str]) -> str:
    """The stored events among ``event_ids`` (``Domain.stored_fields`` columns) with their
    live ``predicted`` label (as a string) and ``model_version``; an event not scored yet is
    left out."""
    ids, spec = sql_list(event_ids), domains.get(domain)
    return (
        f"SELECT e.*, s.predicted, s.model_version FROM (SELECT {spec.stored_fields} "
        f"FROM {spec.events_table} FINAL WHERE event_id IN {ids}) AS e "
        f"INNER JOIN (SELECT event_id, toString({spec.feedback_field}) AS predicted, "
        f"model_version FROM {spec.scores_table} FINAL WHERE event_id IN {ids}) AS s "
        "ON s.event_id = e.id"
    )


def unlabeled_events(domain: str, limit: int) -> str:
    """The ``limit`` most recently stored events of ``domain`` that no feedback label names."""
    spec = domains.get(domain)
    # LIMIT 1 BY instead of FINAL: a top-n read of the newest rows, not a merge of the table.
    return (
        f"SELECT {spec.stored_fields} FROM {spec.events_table} WHERE event_id NOT IN "
        f"(SELECT event_id FROM feedback WHERE domain = {sql_string(domain)}) "
        f"ORDER BY ingested_at DESC, event_id LIMIT 1 BY event_id LIMIT {int(limit)}"
    )


def stored_event_ids(domain: str, event_ids: Sequence[str]) -> str:
    """The ``event_id`` of each of ``event_ids`` stored in the domain's events table."""
    return (
        f"SELECT event_id FROM {domains.get(domain).events_table} "
        f"WHERE event_id IN {sql_list(event_ids)}"
    )


def scored_version(domain: str, event_id: str) -> str:
    """The ``model_version`` of the event's live score (no row when it was not scored)."""
    return (
        f"SELECT model_version FROM {domains.get(domain).scores_table} FINAL "
        f"WHERE event_id = {sql_string(event_id)}"
    )


def labeled_events(domain: str) -> str:
    """Each labeled event once: ``event_id``, its latest ``label`` and ``input``, and
    ``labeled_at``; oldest label first."""
    return (
        "SELECT event_id, argMax(label, ts) AS label, argMax(input, ts) AS input, "
        f"max(ts) AS labeled_at FROM feedback FINAL WHERE domain = {sql_string(domain)} "
        "GROUP BY event_id ORDER BY labeled_at, event_id"
    )


def labeled_count(domain: str) -> str:
    """One value: how many distinct events of ``domain`` carry a label."""
    return f"SELECT uniqExact(event_id) FROM feedback FINAL WHERE domain = {sql_string(domain)}"


def labels_of_runs(domain: str, run_ids: Sequence[str]) -> str:
    """``event_id`` and latest label of each labeled event of the backtest runs ``run_ids``."""
    return (
        "SELECT event_id, argMax(label, ts) FROM feedback FINAL "
        f"WHERE domain = {sql_string(domain)} AND event_id IN "
        f"(SELECT event_id FROM {scores_table(domain)} WHERE run_id IN {sql_list(run_ids)}) "
        "GROUP BY event_id"
    )


def last_trigger(domain: str) -> str:
    """At most one row: ``ts`` and ``labels_total`` of the domain's last fired trigger."""
    return (
        f"SELECT ts, labels_total FROM {TRIGGERS_TABLE} FINAL WHERE domain = {sql_string(domain)} "
        "ORDER BY ts DESC LIMIT 1"
    )


def recent_predictions(domain: str, window: int) -> str:
    """``predicted`` class and its count over the newest ``window`` scores, in the label space
    of the model's training data (``Domain.predicted_sql``)."""
    spec = domains.get(domain)
    return (
        f"SELECT predicted, count() FROM (SELECT {spec.predicted_sql} AS predicted "
        f"FROM {spec.scores_table} ORDER BY scored_at DESC LIMIT {int(window)}) GROUP BY predicted"
    )


def recent_confidence(domain: str, version: str, window: int) -> str:
    """One row: the count and mean calibrated confidence of ``version``'s newest ``window``
    scores. Rows stored before the column existed read 0 and are left out (every real
    confidence is at least 1/k for k classes)."""
    return (
        "SELECT count(), avg(confidence) FROM (SELECT confidence "
        f"FROM {domains.get(domain).scores_table} FINAL "
        f"WHERE model_version = {sql_string(version)} AND confidence > 0 "
        f"ORDER BY scored_at DESC LIMIT {int(window)})"
    )


def backtest_run(run_id: str) -> str:
    """The run's row of ``backtest_runs``, if any."""
    return f"SELECT * FROM {RUNS_TABLE} FINAL WHERE run_id = {sql_string(run_id)}"


def run_results(domain: str, run_id: str) -> str:
    """The results of backtest run ``run_id``, in the live scores table's columns."""
    return (
        f"SELECT * EXCEPT run_id FROM {scores_table(domain)} FINAL "
        f"WHERE run_id = {sql_string(run_id)}"
    )


def live_results_of_run(domain: str, run_id: str) -> str:
    """The live results of the events of backtest run ``run_id``."""
    return (
        f"SELECT * FROM {domains.get(domain).scores_table} FINAL WHERE event_id IN "
        f"(SELECT event_id FROM {scores_table(domain)} WHERE run_id = {sql_string(run_id)})"
    )
