"""Text Q&A of a session: members and rooms ask, the lecturer moderates (hide, answer, pin).
Kept in SQLite for the pages; every question and every moderation also goes into the session's
ledger, so the record of what was asked and answered is as tamper-evident as attendance."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from server.files import private_file
from server.schema import upgrade

SCHEMA = """
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL, participant TEXT NOT NULL, name TEXT NOT NULL,
    text TEXT NOT NULL, hidden INTEGER NOT NULL DEFAULT 0, pinned INTEGER NOT NULL DEFAULT 0,
    answer TEXT NOT NULL DEFAULT '', asked_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS questions_session ON questions (session_id);
"""
ACTIONS = ("hide", "show", "pin", "unpin", "answer")
MAX_TEXT = 500


class QuestionBoard:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(
            private_file(path), isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        upgrade(self._db, "relay.sqlite3")

    def close(self) -> None:
        self._db.close()

    def ask(self, session_id: str, participant: str, name: str, text: str) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO questions (session_id, participant, name, text, asked_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, participant, name, text, time.time()),
            )
        return cur.lastrowid

    def moderate(self, session_id: str, qid: int, action: str, answer: str = "") -> bool:
        sets = {
            "hide": "hidden = 1",
            "show": "hidden = 0",
            "pin": "pinned = 1",
            "unpin": "pinned = 0",
            "answer": "answer = ?",
        }[action]
        args = (answer, qid, session_id) if action == "answer" else (qid, session_id)
        with self._db:
            cur = self._db.execute(
                f"UPDATE questions SET {sets} WHERE id = ? AND session_id = ?", args
            )
        return cur.rowcount > 0

    def list(self, session_id: str, everything: bool, participant: str | None) -> list[dict]:
        """Pinned first, then newest. Members see what is not hidden, and their own."""
        rows = self._db.execute(
            "SELECT id, participant, name, text, hidden, pinned, answer, asked_at FROM questions"
            " WHERE session_id = ? ORDER BY pinned DESC, id DESC",
            (session_id,),
        )
        out = []
        for qid, who, name, text, hidden, pinned, answer, at in rows:
            if hidden and not everything and who != participant:
                continue
            item = {
                "id": qid,
                "name": name,
                "text": text,
                "pinned": bool(pinned),
                "answer": answer,
                "asked_at": at,
                "mine": who == participant,
            }
            if everything:
                item["hidden"] = bool(hidden)
                item["participant"] = who
            out.append(item)
        return out
