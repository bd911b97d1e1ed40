"""Making model versions and judging them: training, distillation, adaptation rounds, the gate.

``signalyard train``, ``distill``, the trainer process and the benchmarks import this; a scoring
worker does not (a test keeps it so).
"""
