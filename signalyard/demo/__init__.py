"""The demo: the synthetic world, the feeds of real rows, bootstrap models and the live table."""
