"""Uploaded files (OpenAI Files API, ``purpose=batch``): bytes on disk, a ``files`` row each.

An upload is copied from FastAPI's spooled temporary file in chunks, counting bytes, lines
and the sha256 on the way, so a 200 MB upload never sits in memory; it is written under a
temporary name and renamed only once it passed the limits, so a refused or broken upload
leaves nothing a reader could open. The row (:class:`StoredFile`) is what the API lists and
what scopes a file to its team: another team's file is simply not found.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.errors import InvalidRequest, NotFound
from broker.store.models import StoredFile, utcnow

MAX_BYTES = 200 * 1024 * 1024
"""The Batch API's input limit (DROPIN_REFERENCE.md §1): 200 MB."""
MAX_LINES = 50_000
"""Requests per batch input file, as OpenAI's."""
EXPIRES_AFTER = timedelta(days=30)
"""``purpose=batch`` files expire after 30 days (the object's ``expires_at``)."""
CHUNK = 1024 * 1024
PURPOSES = ("batch",)
"""What may be uploaded: the broker has batches, no assistants or fine-tuning."""


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


@dataclass(frozen=True, slots=True)
class Saved:
    bytes: int
    lines: int
    sha256: str


def save(source: BinaryIO, directory: Path, file_id: str) -> Saved:
    """Copy ``source`` to ``directory/file_id`` in chunks; 400 (and nothing kept) past the
    byte or line limit."""
    directory.mkdir(parents=True, exist_ok=True)
    final, partial = directory / file_id, directory / f"{file_id}.part"
    digest, size, lines, last = hashlib.sha256(), 0, 0, b"\n"
    try:
        with partial.open("wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise InvalidRequest(
                        f"file: the file is larger than the limit of {MAX_BYTES:,} bytes "
                        "(200 MB) for batch input files",
                        field="file",
                    )
                lines += chunk.count(b"\n")
                if lines > MAX_LINES:
                    raise InvalidRequest(
                        f"file: the file has more than {MAX_LINES:,} lines, the limit for a "
                        "batch input file (one request per line)",
                        field="file",
                    )
                digest.update(chunk)
                out.write(chunk)
                last = chunk[-1:]
        if last != b"\n":  # a last line without its newline is still a line
            lines += 1
            if lines > MAX_LINES:
                raise InvalidRequest(
                    f"file: the file has more than {MAX_LINES:,} lines, the limit for a "
                    "batch input file (one request per line)",
                    field="file",
                )
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return Saved(bytes=size, lines=lines, sha256=digest.hexdigest())


def path_of(directory: Path, file_id: str) -> Path:
    return directory / file_id


def remove(directory: Path, file_id: str) -> None:
    path_of(directory, file_id).unlink(missing_ok=True)


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number from 1, line)`` of the non-blank lines, read one at a time."""
    with path.open("rb") as source:
        for number, line in enumerate(source, start=1):
            if line.strip():
                yield number, line


def add_row(
    session: Session, file_id: str, team_id: str, purpose: str, filename: str, saved: Saved
) -> StoredFile:
    now = utcnow()
    row = StoredFile(
        id=file_id,
        team_id=team_id,
        purpose=purpose,
        filename=filename[:256],
        bytes=saved.bytes,
        lines=saved.lines,
        sha256=saved.sha256,
        created_at=now,
        expires_at=now + EXPIRES_AFTER,
    )
    session.add(row)
    return row


def get_row(session: Session, team_id: str, file_id: str) -> StoredFile:
    row = session.get(StoredFile, file_id)
    if row is None or row.team_id != team_id:
        raise NotFound(f"no file {file_id!r} for this team")
    return row


def list_rows(
    session: Session,
    team_id: str,
    *,
    limit: int,
    after: str | None = None,
    order: str = "desc",
    purpose: str | None = None,
) -> tuple[list[StoredFile], bool]:
    """A page of the team's files by ``created_at`` (then id), after the file ``after``."""
    query = select(StoredFile).where(StoredFile.team_id == team_id)
    if purpose is not None:
        query = query.where(StoredFile.purpose == purpose)
    if after:
        cursor = get_row(session, team_id, after)
        at, key = StoredFile.created_at, StoredFile.id
        same = at == cursor.created_at
        if order == "asc":
            query = query.where((at > cursor.created_at) | (same & (key > cursor.id)))
        else:
            query = query.where((at < cursor.created_at) | (same & (key < cursor.id)))
    if order == "asc":
        query = query.order_by(StoredFile.created_at.asc(), StoredFile.id.asc())
    else:
        query = query.order_by(StoredFile.created_at.desc(), StoredFile.id.desc())
    rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def unix(at: datetime) -> int:
    return int(at.timestamp())


def file_object(row: StoredFile) -> dict:
    """An uploaded file as the SDK's ``FileObject``."""
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": unix(row.created_at),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
        "expires_at": unix(row.expires_at) if row.expires_at else None,
        "status_details": None,
    }
