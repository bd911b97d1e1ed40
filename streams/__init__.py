"""Kafka side: connection options, topic provisioning, the Faust app, agents and schemas."""
