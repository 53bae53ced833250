"""The user's own folders: made, renamed and deleted (their messages go to Trash)."""

from __future__ import annotations

from .database import Database
from .records import FOLDERS, OUTBOX, RESERVED


class FolderTable(Database):
    def user_folders(self, account: str) -> list[str]:
        """Folders the user made, and any other folder a message is in (sorted)."""
        rows = self._rows(
            "SELECT name FROM user_folders WHERE account = ? UNION"
            " SELECT DISTINCT folder FROM messages WHERE account = ?",
            (account, account),
        )
        return sorted({str(r[0]) for r in rows} - RESERVED, key=str.lower)

    def folder_names(self, account: str) -> list[str]:
        """What the folder column lists, in order."""
        return [*FOLDERS[:3], OUTBOX, *FOLDERS[3:], *self.user_folders(account)]

    def create_folder(self, account: str, name: str) -> None:
        self._exec(
            "INSERT OR IGNORE INTO user_folders (account, name) VALUES (?, ?)", (account, name)
        )

    def rename_folder(self, account: str, old: str, new: str) -> int:
        """Rename a user folder, its messages with it; how many messages moved."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "DELETE FROM user_folders WHERE account = ? AND name = ?", (account, old)
                )
                self._db.execute(
                    "INSERT OR IGNORE INTO user_folders (account, name) VALUES (?, ?)",
                    (account, new),
                )
                moved = self._db.execute(
                    "UPDATE messages SET folder = ? WHERE account = ? AND folder = ?",
                    (new, account, old),
                ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return moved

    def delete_folder(self, account: str, name: str) -> int:
        """Remove a user folder; its messages go to Trash (nothing is lost). How many."""
        with self._lock:
            self._db.execute(
                "DELETE FROM user_folders WHERE account = ? AND name = ?", (account, name)
            )
            return self._db.execute(
                "UPDATE messages SET folder = 'Trash' WHERE account = ? AND folder = ?",
                (account, name),
            ).rowcount
