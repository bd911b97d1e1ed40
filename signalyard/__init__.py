"""Signalyard: streaming analytics on Kafka with fine-tuned language models."""
