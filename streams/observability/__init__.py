"""Seeing a worker work: Prometheus metrics, health and readiness, a live dashboard page and a
read-only SQL endpoint, all served by the worker's own web server (``pipeline.web_port``)."""
