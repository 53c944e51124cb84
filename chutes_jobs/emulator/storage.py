"""Output files on disk, and the streamed reading of upload bodies into them."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp
from aiohttp import BodyPartReader, web
from multidict import MultiDictProxy

from .responses import HTTPError

__all__ = ["CHUNK_SIZE", "BlobStore", "UploadForm", "read_upload_form"]

#: Bytes gathered before one write to disk (off the event loop).
CHUNK_SIZE = 1 << 20
#: Largest non-file form field accepted (Starlette's default part limit).
MAX_FIELD_SIZE = 1 << 20
PARSE_ERROR = "There was an error parsing the body"


class BlobStore:
    """Where uploaded output files live: ``<root>/blobs/<job_id>/<file_id>``.

    Names come from workers and may be hostile, so files are stored under their file id.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def blob_path(self, job_id: str, file_id: str) -> Path:
        """The stored bytes of one output file (may not exist)."""
        return self.root / "blobs" / job_id / file_id

    def new_tmp_path(self) -> Path:
        """A fresh path for an upload in progress."""
        return self._tmp / f"{uuid.uuid4().hex}.part"

    def commit(self, tmp: Path, job_id: str, file_id: str) -> None:
        """Move a finished upload into place (atomic: a reader never sees half a file)."""
        target = self.blob_path(job_id, file_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)

    async def delete_job(self, job_id: str) -> None:
        """Remove every stored file of a job."""
        await asyncio.to_thread(shutil.rmtree, self.root / "blobs" / job_id, True)


@dataclass
class UploadForm:
    """What an upload body carried: the spooled ``file`` part and the ``path`` field."""

    tmp_file: Path | None = None
    filename: str | None = None
    path: str | None = None
    #: Text of a ``file`` part sent without a filename (FastAPI refuses it with a 422).
    file_as_text: str | None = None

    def discard(self) -> None:
        """Delete the spooled file, if any."""
        if self.tmp_file is not None:
            self.tmp_file.unlink(missing_ok=True)
            self.tmp_file = None


async def read_upload_form(request: web.Request, blobs: BlobStore) -> UploadForm:
    """Read a multipart body part by part, streaming the ``file`` part to a temporary file.

    Raises a 400 ``There was an error parsing the body`` on malformed multipart. A body that is
    not multipart at all reads as an empty form (FastAPI then reports the missing fields).
    """
    form = UploadForm()
    if request.content_type == "application/x-www-form-urlencoded":
        return _urlencoded_form(await request.post())
    if request.content_type != "multipart/form-data":
        await request.release()
        return form
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ValueError("nested multipart")
            await _read_part(part, form, blobs)
    except (ValueError, AssertionError, aiohttp.http_exceptions.HttpProcessingError) as exc:
        form.discard()
        raise HTTPError(400, PARSE_ERROR) from exc
    except BaseException:
        form.discard()
        raise
    return form


def _urlencoded_form(
    fields: MultiDictProxy[str | bytes | bytearray | web.FileField],
) -> UploadForm:
    """A url-encoded body has text fields only: a ``file`` there is not a file."""
    form = UploadForm()
    file_value, path_value = fields.get("file"), fields.get("path")
    if isinstance(file_value, str):
        form.file_as_text = file_value
    if isinstance(path_value, str):
        form.path = path_value
    return form


async def _read_part(part: BodyPartReader, form: UploadForm, blobs: BlobStore) -> None:
    if part.name == "file" and part.filename:
        form.discard()  # a repeated part replaces the earlier one
        form.tmp_file = blobs.new_tmp_path()
        form.filename = part.filename
        form.file_as_text = None
        await _spool(part, form.tmp_file)
    elif part.name == "file":
        form.file_as_text = (await _read_field(part)).decode("utf-8", "replace")
    elif part.name == "path":
        form.path = (await _read_field(part)).decode("utf-8", "replace")
    else:
        await part.release()


async def _read_field(part: BodyPartReader) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK_SIZE):
        data += chunk
        if len(data) > MAX_FIELD_SIZE:
            raise ValueError("form field too large")
    return bytes(data)


async def _spool(part: BodyPartReader, target: Path) -> None:
    """Copy one part to ``target`` in large batches, writing off the event loop."""
    fh: BinaryIO = await asyncio.to_thread(open, target, "wb")
    try:
        batch = bytearray()
        while chunk := await part.read_chunk(CHUNK_SIZE):
            batch += chunk
            if len(batch) >= CHUNK_SIZE:
                await asyncio.to_thread(fh.write, bytes(batch))
                batch.clear()
        if batch:
            await asyncio.to_thread(fh.write, bytes(batch))
    finally:
        await asyncio.to_thread(fh.close)
