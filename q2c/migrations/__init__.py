"""Alembic migrations that own the Q2C schema; a released migration is never edited."""
