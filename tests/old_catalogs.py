"""Catalogs as earlier edge-search versions left them: made from a current catalog by undoing what each later
schema added (the files table of version 1 is the base)."""

from __future__ import annotations

import sqlite3

NO_INODES = ["ALTER TABLE files DROP COLUMN inode"]
NO_VIDEOS = [
    *NO_INODES,
    "DROP TRIGGER files_forget_frames",
    "DROP INDEX frames_file",
    "DROP TABLE frames",
    "ALTER TABLE files DROP COLUMN kind",
]
NO_DATES = [
    *NO_VIDEOS,
    "DROP INDEX files_taken",
    "ALTER TABLE files DROP COLUMN taken",
    "ALTER TABLE files DROP COLUMN taken_from",
]
BACK_TO = {
    6: NO_INODES,
    5: NO_VIDEOS,
    4: NO_DATES,
    3: [*NO_DATES, "ALTER TABLE files DROP COLUMN signature"],
    2: [*NO_DATES, "ALTER TABLE files DROP COLUMN signature", "ALTER TABLE roots DROP COLUMN follow_links"],
    1: [*NO_DATES, "ALTER TABLE files DROP COLUMN signature", "DROP TABLE roots", "DROP INDEX files_sha256"],
}


def downgrade(catalog, version: int) -> None:
    with sqlite3.connect(catalog) as db:
        for statement in BACK_TO[version]:
            db.execute(statement)
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
