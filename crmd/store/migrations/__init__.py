"""Alembic migrations of the crmd store; `crmd` applies them when it opens a store."""
