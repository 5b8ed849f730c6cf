"""Chat sessions and feedback in a real database: SQLite under the data dir by default, any
SQLAlchemy URL (Postgres) via RAGLINE_SESSIONS_URL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Engine

metadata = MetaData()
messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("session_id", String(128), index=True, nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("meta", Text, nullable=False, default="{}"),  # sources, config version, usage (JSON)
    Column("created_at", DateTime(timezone=True), nullable=False),
)
feedback = Table(
    "feedback",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("message_id", String(32), index=True, nullable=False),
    Column("session_id", String(128), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


HISTORY_TURNS = 3  # exchanges of a conversation that a new question sees


class UnknownMessageError(LookupError):
    pass


def open_engine(url: str) -> Engine:
    """The sessions database (API keys live there too, serving/keys.py)."""
    engine = create_engine(url, future=True)
    if url.startswith("sqlite"):
        if engine.url.database and engine.url.database != ":memory:":
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)  # e.g. a fresh data dir

        # Serve replicas and the CLI share the file: WAL lets readers and one writer work together.
        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA busy_timeout=5000")

    return engine


class SessionStore:
    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        metadata.create_all(self.engine)

    def history(self, session_id: str, turns: int = HISTORY_TURNS) -> list[dict[str, str]]:
        """The last TURNS exchanges, oldest first, as chat messages."""
        q = (
            select(messages.c.role, messages.c.content)
            .where(messages.c.session_id == session_id)
            .order_by(messages.c.created_at.desc())
            .limit(turns * 2)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [{"role": r.role, "content": r.content} for r in reversed(rows)]

    def append(self, session_id: str, role: str, content: str, **meta: Any) -> str:
        message_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                insert(messages).values(
                    id=message_id,
                    session_id=session_id,
                    role=role,
                    content=content,
                    meta=json.dumps(meta, default=str),
                    created_at=datetime.now(UTC),
                )
            )
        return message_id

    def add_feedback(self, message_id: str, rating: int, comment: str = "", session_prefix: str = "") -> str:
        """SESSION_PREFIX: a tenant's (auth.session_key); a message outside it is unknown to them."""
        with self.engine.begin() as conn:
            row = conn.execute(select(messages.c.session_id).where(messages.c.id == message_id)).first()
            if row is None or not row.session_id.startswith(session_prefix):
                raise UnknownMessageError(f"no message with id {message_id!r}")
            feedback_id = uuid.uuid4().hex
            conn.execute(
                insert(feedback).values(
                    id=feedback_id,
                    message_id=message_id,
                    session_id=row.session_id,
                    rating=rating,
                    comment=comment,
                    created_at=datetime.now(UTC),
                )
            )
        return feedback_id

    def feedback_for(self, message_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(feedback).where(feedback.c.message_id == message_id)).all()
        return [dict(r._mapping) for r in rows]

    def rated_answers(self) -> list[dict[str, Any]]:
        """Every rating with the answer it rates: {"feedback_id", "message_id", "rating", "comment",
        "rated_at", "answer", "meta" (the answer's: collection, question, sources, cited ...)}."""
        q = (
            select(
                feedback.c.id,
                feedback.c.message_id,
                feedback.c.rating,
                feedback.c.comment,
                feedback.c.created_at,
                messages.c.content,
                messages.c.meta,
            )
            .join(messages, messages.c.id == feedback.c.message_id)
            .order_by(feedback.c.created_at)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            {
                "feedback_id": r.id,
                "message_id": r.message_id,
                "rating": r.rating,
                "comment": r.comment,
                "rated_at": r.created_at,
                "answer": r.content,
                "meta": json.loads(r.meta or "{}"),
            }
            for r in rows
        ]
