"""Where wb keeps its things: the database and a workspace folder for runs, reports and servers.

Both come from options or the environment: `--db`/`WB_DB` (a path or an SQLAlchemy URL) and
`--workspace`/`WB_WORKSPACE` (default `./wb-workspace`). The DB defaults to `<workspace>/wb.db`.
`create_db`: whether opening may make a new database (the CLI allows it for `wb import` only,
so a mistyped `--db` is an error instead of a new, empty workspace).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import DatabaseError

if TYPE_CHECKING:
    from db import Database

DEFAULT_WORKSPACE = "wb-workspace"


@dataclass
class Workspace:
    root: Path
    db_location: str
    create_db: bool = True
    _db: Database | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_options(cls, db: str | None = None, workspace: str | None = None, *, create_db: bool = True) -> Workspace:
        root = Path(workspace or os.environ.get("WB_WORKSPACE") or DEFAULT_WORKSPACE).expanduser().resolve()
        location = db or os.environ.get("WB_DB") or str(root / "wb.db")
        return cls(root=root, db_location=location, create_db=create_db)

    @cached_property
    def db(self) -> Database:
        from db import open_database  # SQLAlchemy: not for `wb --help`
        from db.session import DatabaseUnusable

        try:
            return open_database(self.db_location, create=self.create_db)
        except DatabaseUnusable as exc:
            raise DatabaseError(exc.message, exc.hint) from None

    def folder(self, *parts: str) -> Path:
        """A sub-folder of the workspace, created on first use."""
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path
