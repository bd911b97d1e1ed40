"""Outputs: ClickHouse tables and Kafka topics that results and alerts are written to."""
