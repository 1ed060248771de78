"""Collectors: receive OTLP/HTTP traces and logs and middleware integration logs, and store
them, with the transactions, stage events, exceptions and dead letters they imply, in
PostgreSQL — idempotently and all-or-nothing per request."""
