"""Reconciliation against the systems of record: each configured reconciliation reads its
sources' records into staging tables and compares them set-wise in PostgreSQL, turning
every break (a record missing, duplicated or disagreeing) into an exception."""
