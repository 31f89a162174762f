"""Regenerate db/migrations/versions/0001_initial.py from the models.

Only while nothing has landed for users (no DB in the wild at revision 0001). After the first
release, add a new revision instead: `alembic revision --autogenerate` with db.session.alembic_config.
"""
import tempfile
from pathlib import Path

from alembic import command

from db.session import alembic_config

versions = Path(__file__).resolve().parents[1] / "db" / "migrations" / "versions"
target = versions / "0001_initial.py"
target.unlink(missing_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    cfg = alembic_config(f"sqlite:///{tmp}/gen.db")
    command.revision(cfg, message="initial", autogenerate=True, rev_id="0001")
generated = next(versions.glob("0001_*.py"))
generated.rename(target)
print(f"wrote {target}")
