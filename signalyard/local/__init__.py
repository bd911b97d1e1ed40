"""The local stack: a real single-node Kafka broker run from Maven-fetched jars, and worker
processes run beside it."""
