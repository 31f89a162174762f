"""Persistence: SQLAlchemy 2.x models, engine/session helpers and Alembic migrations.

Imports nothing of ours. Everything else reaches the database through `db.session`.
"""
from db.session import Database, open_database

__all__ = ["Database", "open_database"]
