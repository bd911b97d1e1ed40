"""Alerting: windowed rules per entity over the scored topics, published to ``alerts``."""
