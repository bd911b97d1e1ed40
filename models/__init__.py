"""Classifiers: training, evaluation, the registry and the inference engine."""
