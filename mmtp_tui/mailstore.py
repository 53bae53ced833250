"""The local mail store: SQLite in the user's data dir, one file for all accounts.

Messages keep their packet as received, plus what opening it found (decrypted subject and
body, cached for search and offline reading; signature and integrity status). Folders are
names; threads are keyed by the first of `references`, else `inReplyTo`, else the message's
own id. Plain module: no Textual.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtp_proto.outgoing import Outgoing

FOLDERS = ("Inbox", "Sent", "Drafts", "Archive", "Trash")
OUTBOX = "Outbox"  # not a folder of messages: unsent composes waiting for the server
ALL_INBOXES = "All inboxes"  # every account's Inbox in one list
RESERVED = frozenset((*FOLDERS, OUTBOX, ALL_INBOXES))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    message_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    folder TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    timestamp INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL DEFAULT 0,
    read INTEGER NOT NULL DEFAULT 0,
    encrypted INTEGER NOT NULL DEFAULT 0,
    decrypted INTEGER NOT NULL DEFAULT 1,
    integrity_ok INTEGER NOT NULL DEFAULT 1,
    signature TEXT NOT NULL DEFAULT 'unsigned',
    signer_fingerprint TEXT,
    problem TEXT,
    in_reply_to TEXT,
    refs TEXT NOT NULL DEFAULT '[]',
    thread TEXT NOT NULL,
    attachments TEXT NOT NULL DEFAULT '[]',
    packet TEXT NOT NULL DEFAULT '{}',
    UNIQUE (account, message_id, direction)
);
CREATE INDEX IF NOT EXISTS messages_folder ON messages (account, folder, timestamp);
CREATE INDEX IF NOT EXISTS messages_thread ON messages (account, thread);
CREATE TABLE IF NOT EXISTS drafts (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    recipient TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    in_reply_to TEXT,
    refs TEXT NOT NULL DEFAULT '[]',
    updated INTEGER NOT NULL,
    outgoing TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    account TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    outgoing TEXT NOT NULL,
    packet TEXT,
    created INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS user_folders (
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (account, name)
);
CREATE TABLE IF NOT EXISTS server_facts (
    account TEXT PRIMARY KEY,
    difficulty INTEGER NOT NULL
);
"""


@dataclass
class StoredMessage:
    id: int
    account: str
    message_id: str
    direction: str
    folder: str
    sender: str
    recipient: str
    subject: str
    body: str
    timestamp: int
    received_at: int
    read: bool
    encrypted: bool
    decrypted: bool
    integrity_ok: bool
    signature: str
    signer_fingerprint: str | None
    problem: str | None
    in_reply_to: str | None
    refs: list[str]
    thread: str
    attachments: list[dict[str, Any]]
    packet: dict[str, Any] = field(repr=False, default_factory=dict)
    flagged: bool = False
    depth: int = 0  # set by thread ordering: 0 for a thread's first message shown
    hidden_replies: int = 0  # set when threads are collapsed: replies folded under this one
    # A fetched packet that could not be read (`problem` says why): kept on the server until
    # the user deletes it; `message_id` is its id, or an "unreadable-..." marker.
    unreadable: bool = False


@dataclass
class Draft:
    """A compose put aside: the whole Outgoing (type, attachments, choices included)."""

    id: int
    account: str
    outgoing: Outgoing
    updated: int

    @property
    def recipient(self) -> str:
        return ", ".join(self.outgoing.recipients())

    @property
    def subject(self) -> str:
        return self.outgoing.subject


@dataclass
class Queued:
    """A message in the Outbox: what was written, and its sealed, stamped packet (None when
    it could not be sealed offline, e.g. no pinned key for the recipient yet)."""

    id: int
    account: str
    outgoing: Outgoing
    packet: dict[str, Any] | None
    created: int
    attempts: int = 0
    last_error: str = ""


MAX_FOLDER_NAME = 64


def folder_name_problem(name: str, existing: Iterable[str]) -> str | None:
    """Why `name` cannot be a new user folder, in words; None when it can."""
    if not name.strip() or name != name.strip():
        return "a folder name cannot be empty or start or end with spaces"
    if len(name) > MAX_FOLDER_NAME:
        return f"a folder name has at most {MAX_FOLDER_NAME} characters"
    if not name.isprintable():
        return "a folder name cannot hold control characters"
    if name.lower() in {n.lower() for n in RESERVED}:
        return f"{name} is one of the built-in folders"
    if name.lower() in {n.lower() for n in existing}:
        return f"there is a folder {name} already"
    return None


def thread_key(message_id: str, in_reply_to: str | None, refs: Iterable[str] | None) -> str:
    refs = [r for r in (refs or []) if isinstance(r, str) and r]
    if refs:
        return refs[0]
    return in_reply_to or message_id


class MailStore:
    """Thread-safe (one connection behind a lock): workers and the UI share it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(drafts)")}
        if "outgoing" not in columns:  # a store from before drafts kept the whole Outgoing
            self._db.execute("ALTER TABLE drafts ADD COLUMN outgoing TEXT")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "flagged" not in columns:  # a store from before flags
            self._db.execute("ALTER TABLE messages ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0")
        if "unreadable" not in columns:  # a store from before unreadable messages were kept
            self._db.execute(
                "ALTER TABLE messages ADD COLUMN unreadable INTEGER NOT NULL DEFAULT 0"
            )
        path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _exec(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # ------------------------------------------------------------------ messages

    def add_message(
        self,
        account: str,
        *,
        packet: dict[str, Any],
        direction: str,
        folder: str,
        subject: str,
        body: str,
        read: bool = False,
        encrypted: bool = False,
        decrypted: bool = True,
        integrity_ok: bool = True,
        signature: str = "unsigned",
        signer_fingerprint: str | None = None,
        problem: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Store one message; False if this account already has it (same id, direction)."""
        meta = packet.get("meta") or {}
        message_id = str(meta.get("messageId", ""))
        refs = [r for r in meta.get("references") or [] if isinstance(r, str)]
        in_reply_to = meta.get("inReplyTo") if isinstance(meta.get("inReplyTo"), str) else None
        timestamp = meta.get("timestamp") if isinstance(meta.get("timestamp"), int) else 0
        received = meta.get("receivedAt")
        received = received if isinstance(received, int) else int(time.time())
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO messages (account, message_id, direction, folder, sender,"
                " recipient, subject, body, timestamp, received_at, read, encrypted, decrypted,"
                " integrity_ok, signature, signer_fingerprint, problem, in_reply_to, refs,"
                " thread, attachments, packet)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    account,
                    message_id,
                    direction,
                    folder,
                    str(packet.get("sender", "")),
                    str(packet.get("recipient", "")),
                    subject,
                    body,
                    timestamp,
                    received,
                    int(read),
                    int(encrypted),
                    int(decrypted),
                    int(integrity_ok),
                    signature,
                    signer_fingerprint,
                    problem,
                    in_reply_to,
                    json.dumps(refs),
                    thread_key(message_id, in_reply_to, refs),
                    json.dumps(attachments or []),
                    json.dumps(packet),
                ),
            )
            return cur.rowcount == 1

    def add_unreadable(
        self,
        account: str,
        *,
        message_id: str,
        reason: str,
        sender: str = "",
        timestamp: int = 0,
        raw: str = "",
    ) -> bool:
        """Keep a fetched packet that could not be read, so the user sees it and can delete
        it on the server; the packet itself is not kept (`raw`: a short excerpt for the body).
        False if this account already has it."""
        body = f"This message could not be read: {reason}.\nDelete it to remove it from the server."
        if raw:
            body += f"\n\nThe start of what arrived:\n{raw}"
        now = int(time.time())
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO messages (account, message_id, direction, folder, sender,"
                " recipient, subject, body, timestamp, received_at, encrypted, decrypted,"
                " integrity_ok, problem, thread, unreadable)"
                " VALUES (?,?,'in','Inbox',?,'',?,?,?,?,0,0,0,?,?,1)",
                (
                    account,
                    message_id,
                    sender,
                    "(unreadable message)",
                    body,
                    timestamp or now,
                    now,
                    reason,
                    message_id,
                ),
            )
            return cur.rowcount == 1

    def remove(self, row_id: int) -> None:
        """Gone for good, wherever it is (an unreadable message the server has dropped)."""
        self._exec("DELETE FROM messages WHERE id = ?", (row_id,))

    @staticmethod
    def _message(row: sqlite3.Row) -> StoredMessage:
        values = dict(row)
        for key in ("read", "encrypted", "decrypted", "integrity_ok", "flagged", "unreadable"):
            values[key] = bool(values[key])
        values["refs"] = json.loads(values["refs"])
        values["attachments"] = json.loads(values["attachments"])
        values["packet"] = json.loads(values["packet"])
        return StoredMessage(**values)

    def get(self, row_id: int) -> StoredMessage | None:
        rows = self._rows("SELECT * FROM messages WHERE id = ?", (row_id,))
        return self._message(rows[0]) if rows else None

    def find(self, account: str, message_id: str) -> StoredMessage | None:
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND message_id = ? ORDER BY direction",
            (account, message_id),
        )
        return self._message(rows[0]) if rows else None

    def folder(self, account: str, folder: str) -> list[StoredMessage]:
        """A folder's messages, threads together: threads by their newest message first,
        each thread oldest first, replies indented by `depth`."""
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND folder = ? ORDER BY timestamp, id",
            (account, folder),
        )
        return order_threads([self._message(r) for r in rows])

    def thread(self, account: str, thread: str) -> list[StoredMessage]:
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND thread = ? AND folder != 'Trash'"
            " ORDER BY timestamp, id",
            (account, thread),
        )
        return [self._message(r) for r in rows]

    def search(self, account: str, text: str) -> list[StoredMessage]:
        """Subject, sender and (decrypted) body, case-insensitive; Trash excluded."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND folder != 'Trash' AND ("
            " subject LIKE ? ESCAPE '\\' OR sender LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\')"
            " ORDER BY timestamp DESC, id DESC",
            (account, pattern, pattern, pattern),
        )
        return [self._message(r) for r in rows]

    def counts(self, account: str) -> dict[str, tuple[int, int]]:
        """folder -> (total, unread)."""
        result = {name: (0, 0) for name in FOLDERS}
        for row in self._rows(
            "SELECT folder, COUNT(*), SUM(1 - read) FROM messages WHERE account = ?"
            " GROUP BY folder",
            (account,),
        ):
            result[row[0]] = (int(row[1]), int(row[2] or 0))
        result["Drafts"] = (len(self.drafts(account)), 0)
        result[OUTBOX] = (len(self._rows("SELECT id FROM outbox WHERE account = ?", (account,))), 0)
        return result

    def contacts(self, account: str) -> list[str]:
        rows = self._rows(
            "SELECT sender AS a FROM messages WHERE account = ? AND direction = 'in' UNION"
            " SELECT recipient AS a FROM messages WHERE account = ? AND direction = 'out'",
            (account, account),
        )
        return sorted({str(r[0]) for r in rows})

    def set_read(self, row_id: int, read: bool = True) -> None:
        self._exec("UPDATE messages SET read = ? WHERE id = ?", (int(read), row_id))

    def move(self, row_id: int, folder: str) -> None:
        self._exec("UPDATE messages SET folder = ? WHERE id = ?", (folder, row_id))

    def delete(self, row_id: int) -> str:
        """To Trash; from Trash, for good. Answers 'trash' or 'deleted'."""
        message = self.get(row_id)
        if message is None:
            return "deleted"
        if message.folder != "Trash":
            self.move(row_id, "Trash")
            return "trash"
        self._exec("DELETE FROM messages WHERE id = ?", (row_id,))
        return "deleted"

    def set_flagged(self, row_id: int, flagged: bool = True) -> None:
        self._exec("UPDATE messages SET flagged = ? WHERE id = ?", (int(flagged), row_id))

    def move_many(self, row_ids: Iterable[int], folder: str) -> list[tuple[int, str]]:
        """Move messages; returns (id, folder it was in) for each, which `restore` undoes."""
        before: list[tuple[int, str]] = []
        with self._lock:
            for row_id in row_ids:
                row = self._db.execute("SELECT folder FROM messages WHERE id = ?", (row_id,))
                found = row.fetchone()
                if found is None:
                    continue
                before.append((row_id, str(found[0])))
                self._db.execute("UPDATE messages SET folder = ? WHERE id = ?", (folder, row_id))
        return before

    def restore(self, moves: Iterable[tuple[int, str]]) -> int:
        """Put messages back where `move_many` found them; how many were still there."""
        done = 0
        for row_id, folder in moves:
            done += self._exec("UPDATE messages SET folder = ? WHERE id = ?", (folder, row_id))
        return done

    def mark_all_read(self, account: str, folder: str) -> int:
        return self._exec(
            "UPDATE messages SET read = 1 WHERE account = ? AND folder = ? AND read = 0",
            (account, folder),
        )

    def messages(self, account: str) -> list[StoredMessage]:
        """Every message of an account but those in Trash, newest first (search filters it)."""
        rows = self._rows(
            "SELECT * FROM messages WHERE account = ? AND folder != 'Trash'"
            " ORDER BY timestamp DESC, id DESC",
            (account,),
        )
        return [self._message(r) for r in rows]

    def inboxes(self, accounts: Iterable[str]) -> list[StoredMessage]:
        """The combined inbox: every given account's Inbox, threads together."""
        names = list(accounts)
        if not names:
            return []
        marks = ",".join("?" * len(names))
        rows = self._rows(
            f"SELECT * FROM messages WHERE folder = 'Inbox' AND account IN ({marks})"
            " ORDER BY timestamp, id",
            tuple(names),
        )
        return order_threads([self._message(r) for r in rows])

    # ------------------------------------------------------------------ user folders

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

    # ------------------------------------------------------------------ outbox

    def queue(self, account: str, outgoing: Outgoing, packet: dict[str, Any] | None) -> int:
        """Keep a message that could not be sent now (with its stamped packet, if made)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (account, outgoing, packet, created) VALUES (?,?,?,?)",
                (
                    account,
                    json.dumps(outgoing.to_dict()),
                    json.dumps(packet) if packet is not None else None,
                    int(time.time()),
                ),
            )
            return int(cur.lastrowid or 0)

    def outbox(self, account: str) -> list[Queued]:
        rows = self._rows("SELECT * FROM outbox WHERE account = ? ORDER BY id", (account,))
        return [
            Queued(
                id=row["id"],
                account=row["account"],
                outgoing=Outgoing.from_dict(json.loads(row["outgoing"])),
                packet=json.loads(row["packet"]) if row["packet"] else None,
                created=row["created"],
                attempts=row["attempts"],
                last_error=row["last_error"],
            )
            for row in rows
        ]

    def queued(self, queued_id: int) -> Queued | None:
        rows = self._rows("SELECT account FROM outbox WHERE id = ?", (queued_id,))
        if not rows:
            return None
        return next((q for q in self.outbox(str(rows[0][0])) if q.id == queued_id), None)

    def unqueue(self, queued_id: int) -> None:
        self._exec("DELETE FROM outbox WHERE id = ?", (queued_id,))

    def queue_failed(self, queued_id: int, error: str) -> None:
        self._exec(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error, queued_id),
        )

    def set_difficulty(self, account: str, bits: int) -> None:
        """The stamp bits the account's server last asked for (an offline stamp uses them)."""
        self._exec(
            "INSERT INTO server_facts (account, difficulty) VALUES (?, ?)"
            " ON CONFLICT(account) DO UPDATE SET difficulty = excluded.difficulty",
            (account, bits),
        )

    def difficulty(self, account: str) -> int | None:
        rows = self._rows("SELECT difficulty FROM server_facts WHERE account = ?", (account,))
        return int(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ drafts

    def save_draft(self, account: str, outgoing: Outgoing, *, draft_id: int | None = None) -> int:
        """Keep ``outgoing`` as a draft; with the ``draft_id`` of an existing draft, update
        that one (saving the same compose again must not pile up copies). Returns the id."""
        data = json.dumps(outgoing.to_dict())
        legacy = (
            ", ".join(outgoing.recipients()),
            outgoing.subject,
            outgoing.body,
            outgoing.in_reply_to,
            json.dumps(outgoing.references),
        )
        now = int(time.time())
        with self._lock:
            if draft_id is not None:
                cur = self._db.execute(
                    "UPDATE drafts SET recipient=?, subject=?, body=?, in_reply_to=?, refs=?,"
                    " outgoing=?, updated=? WHERE id=? AND account=?",
                    (*legacy, data, now, draft_id, account),
                )
                if cur.rowcount == 1:
                    return draft_id
            cur = self._db.execute(
                "INSERT INTO drafts (account, recipient, subject, body, in_reply_to, refs,"
                " outgoing, updated) VALUES (?,?,?,?,?,?,?,?)",
                (account, *legacy, data, now),
            )
            return int(cur.lastrowid or 0)

    @staticmethod
    def _draft(row: sqlite3.Row) -> Draft:
        if row["outgoing"]:
            outgoing = Outgoing.from_dict(json.loads(row["outgoing"]))
        else:  # written before drafts kept the whole Outgoing
            outgoing = Outgoing(
                to=[row["recipient"]] if row["recipient"] else [],
                subject=row["subject"],
                body=row["body"],
                in_reply_to=row["in_reply_to"],
                references=json.loads(row["refs"]),
            )
        return Draft(row["id"], row["account"], outgoing, row["updated"])

    def drafts(self, account: str) -> list[Draft]:
        rows = self._rows(
            "SELECT * FROM drafts WHERE account = ? ORDER BY updated DESC, id DESC", (account,)
        )
        return [self._draft(row) for row in rows]

    def draft(self, draft_id: int) -> Draft | None:
        rows = self._rows("SELECT * FROM drafts WHERE id = ?", (draft_id,))
        return self._draft(rows[0]) if rows else None

    def delete_draft(self, draft_id: int) -> None:
        self._exec("DELETE FROM drafts WHERE id = ?", (draft_id,))

    # ------------------------------------------------------------------ cursors

    def cursor(self, account: str) -> str | None:
        rows = self._rows("SELECT cursor FROM cursors WHERE account = ?", (account,))
        return str(rows[0][0]) if rows else None

    def set_cursor(self, account: str, cursor: str) -> None:
        self._exec(
            "INSERT INTO cursors (account, cursor) VALUES (?, ?)"
            " ON CONFLICT(account) DO UPDATE SET cursor = excluded.cursor",
            (account, cursor),
        )


def order_threads(messages: list[StoredMessage]) -> list[StoredMessage]:
    """Group by thread: newest thread first, messages of a thread oldest first; a message
    whose parent is shown above it gets depth parent+1."""
    groups: dict[str, list[StoredMessage]] = {}
    for message in messages:
        groups.setdefault(message.thread, []).append(message)
    ordered: list[StoredMessage] = []
    for group in sorted(
        groups.values(), key=lambda g: max((m.timestamp, m.id) for m in g), reverse=True
    ):
        depth_of: dict[str, int] = {}
        for message in group:
            parent = message.in_reply_to
            message.depth = (
                depth_of[parent] + 1
                if parent in depth_of
                else (1 if ordered_in_thread(message, group) else 0)
            )
            depth_of[message.message_id] = message.depth
            ordered.append(message)
    return ordered


def ordered_in_thread(message: StoredMessage, group: list[StoredMessage]) -> bool:
    """A reply whose parent is not in this folder is still shown under the thread's first."""
    return bool(message.in_reply_to) and group[0] is not message
