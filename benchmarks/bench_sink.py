"""Rows per second into the embedded ClickHouse, for score rows, at several insert sizes.

Two figures per batch size: the client inserting ready batches directly (the ceiling), and the
ClickHouseSink fed by concurrent writers of small micro-batches, as scoring agents feed it. A
writer awaits each write, so when every writer is waiting the batch can only close on age:
the sink then moves at most writers * write_rows rows per max_delay_ms.

    .venv/bin/python benchmarks/bench_sink.py [--rows 20000] [--writers 8] [--write-rows 64]
        [--max-delay-ms 200] [--out benchmarks/results/sink.json]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recording import dict_table, record

from config.settings import SinkSettings
from store.connection import connect
from store.schema import create_tables
from store.sink import ClickHouseSink, count_final

BATCH_SIZES = (100, 1000, 5000)


def score_rows(count: int, prefix: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "event_id": f"{prefix}-{i}",
            "ts": now,
            "ticker": f"T{i % 500}",
            "label": ("negative", "neutral", "positive")[i % 3],
            "p_negative": 0.2,
            "p_neutral": 0.3,
            "p_positive": 0.5,
            "sentiment": 0.3,
            "model_name": "sentiment",
            "model_version": "v1",
            "batch_size": 32,
            "latency_ms": 12.5,
            "scored_at": now,
        }
        for i in range(count)
    ]


def direct(dsn: str, rows: list[dict[str, Any]], batch: int) -> float:
    client = connect(dsn)
    try:
        columns = list(rows[0])
        values = [[row[c] for c in columns] for row in rows]
        started = time.perf_counter()
        for start in range(0, len(values), batch):
            client.insert("news_scores", values[start : start + batch], column_names=columns)
        return len(rows) / (time.perf_counter() - started)
    finally:
        client.close()


async def through_sink(
    dsn: str, rows: list[dict[str, Any]], batch: int, args: argparse.Namespace
) -> tuple[float, int]:
    settings = SinkSettings(
        max_batch_rows=batch,
        max_delay_ms=args.max_delay_ms,
        max_pending_rows=max(10 * batch, 50_000),
        retry_initial_ms=100,
        retry_max_ms=5000,
        max_attempts_on_permanent_error=3,
    )
    sink = ClickHouseSink(dsn, settings)
    await sink.start()
    share = len(rows) // args.writers

    async def writer(mine: list[dict[str, Any]]) -> None:
        for start in range(0, len(mine), args.write_rows):
            await sink.write("news_scores", mine[start : start + args.write_rows])

    started = time.perf_counter()
    await asyncio.gather(*(writer(rows[w * share : (w + 1) * share]) for w in range(args.writers)))
    elapsed = time.perf_counter() - started
    inserts = sink.inserts
    await sink.stop()
    return args.writers * share / elapsed, inserts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per measurement")
    parser.add_argument("--writers", type=int, default=8, help="concurrent sink writers")
    parser.add_argument("--write-rows", type=int, default=64, help="rows per write() call")
    parser.add_argument("--max-delay-ms", type=int, default=200, help="the sink's max_delay_ms")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/sink.json")
    args = parser.parse_args()
    rows_per_s = []

    with tempfile.TemporaryDirectory() as home:
        dsn = f"chdb://{Path(home) / 'clickhouse'}"
        setup = connect(dsn)
        create_tables(setup)
        setup.close()
        print(
            f"{args.rows} news_scores rows per run; sink fed by {args.writers} writers of"
            f" {args.write_rows} rows, max_delay_ms={args.max_delay_ms}. rows/s:"
        )
        print(f"{'batch':>6} {'client.insert':>14} {'sink':>10} {'sink inserts':>13}")
        for batch in BATCH_SIZES:
            plain = direct(dsn, score_rows(args.rows, f"d{batch}"), batch)
            rows = score_rows(args.rows, f"s{batch}")
            sunk, inserts = asyncio.run(through_sink(dsn, rows, batch, args))
            print(f"{batch:>6} {plain:>14,.0f} {sunk:>10,.0f} {inserts:>13}")
            rows_per_s.append(
                {"batch": batch, "client_insert": plain, "sink": sunk, "sink_inserts": inserts}
            )
        check = connect(dsn)
        expected = 2 * len(BATCH_SIZES) * args.rows
        assert count_final(check, "news_scores") == expected, "rows lost"
        check.close()
    record(
        "sink",
        "Score rows per second into the embedded ClickHouse",
        {"rows_per_s": rows_per_s, "options": vars(args) | {"out": str(args.out)}},
        out=args.out,
        tables=[dict_table(rows_per_s)],
        notes=[
            f"{args.rows:,} news_scores rows per run; the sink fed by {args.writers} writers of "
            f"{args.write_rows} rows, max_delay_ms {args.max_delay_ms}."
        ],
    )


if __name__ == "__main__":
    main()
