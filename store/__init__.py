"""The store: ClickHouse. Connecting (embedded or a server), the tables made from the domains,
the sink that writes results, and every read, with its SQL."""
