"""The seven Jobs API routes, with the live server's checks, order, texts and (opt-in) bugs."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..models import file_id_for
from .auth import SCOPE_READ, SCOPE_WRITE, authenticate
from .downloads import send_file
from .faults import FAULT_KEY
from .responses import HTTPError, json_response, missing_field
from .storage import BlobStore, UploadForm, read_upload_form
from .store import JobRecord, Store, User, utcnow
from .tokens import InvalidToken, TokenIssuer

__all__ = ["Options", "Routes", "jsonb_order"]


@dataclass
class Options:
    """Behaviour switches of the emulated server."""

    live_quirks: bool = False
    range_support: bool = True
    expose_status: bool = False
    daily_quota: int | None = None
    daily_total_quota: int | None = None


def jsonb_order(value: Any) -> Any:
    """``value`` with object keys in PostgreSQL JSONB order (shorter keys first, then bytes)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: jsonb_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [jsonb_order(v) for v in value]
    return value


def _is_object_or_null(value: Any) -> bool:
    return value is None or isinstance(value, dict)


class Routes:
    """Route handlers; each takes the request and its path parameters and returns an answer."""

    def __init__(
        self,
        store: Store,
        tokens: TokenIssuer,
        blobs: BlobStore,
        options: Options,
        *,
        base_url: Callable[[], str],
        on_create: Callable[[JobRecord], None],
        on_delete: Callable[[JobRecord], None],
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.blobs = blobs
        self.options = options
        self._base_url = base_url
        self._on_create = on_create
        self._on_delete = on_delete

    # -- user routes ---------------------------------------------------------------------

    async def create(self, request: web.Request, chute_id: str, method: str) -> web.Response:
        """``POST /jobs/{chute_id}/{method}``: auth, chute, quota, body, ``_disk_gb``."""
        body = await request.read()
        user = authenticate(request, body, self.store, SCOPE_WRITE)
        chute = self.store.find_chute(chute_id, method, user.user_id)
        if chute is None:
            raise HTTPError(404, f"Chute {chute_id} not found")
        self._check_quota(user, chute.chute_id)
        try:
            job_args = json.loads(body)
        except ValueError as exc:
            raise HTTPError.server_error() from exc
        if not isinstance(job_args, dict):
            raise HTTPError.server_error()
        job_args["_disk_gb"] = _disk_gb(job_args.get("_disk_gb"))
        job = JobRecord(
            job_id=str(uuid.uuid4()),
            user_id=user.user_id,
            chute=chute,
            method=method,
            job_args=jsonb_order(job_args),
        )
        self.store.jobs[job.job_id] = job
        self._on_create(job)
        return self._job_response(job)

    def _check_quota(self, user: User, chute_id: str) -> None:
        quota, total_quota = self.options.daily_quota, self.options.daily_total_quota
        if quota is None and total_quota is None:
            return
        chute_jobs, total_jobs = self.store.jobs_today(user.user_id, chute_id)
        if (quota is not None and chute_jobs >= quota) or (
            total_quota is not None and total_jobs >= total_quota
        ):
            raise HTTPError(
                429,
                f"Daily job quota exceeded: chute_job_count={chute_jobs} "
                f"total_job_count={total_jobs} of job_quota={quota} "
                f"and total_quota={total_quota}",
            )

    async def get(self, request: web.Request, job_id: str) -> web.Response:
        """``GET /jobs/{job_id}``."""
        job = self._user_job(
            request, job_id, "Job not found, or does not belong to you", SCOPE_READ
        )
        return self._job_response(job)

    async def delete(self, request: web.Request, job_id: str) -> web.Response:
        """``DELETE /jobs/{job_id}``: files and worker go; the row too unless live quirks."""
        job = self._user_job(
            request, job_id, f"Job {job_id} not found or does not belong to you", SCOPE_WRITE
        )
        await self.blobs.delete_job(job_id)
        self._on_delete(job)
        if self.options.live_quirks:  # the live route's response fails validation: rollback
            raise HTTPError.server_error()
        del self.store.jobs[job_id]
        return json_response({"deleted": True, "job_id": job_id})

    async def download(self, request: web.Request, job_id: str, file_id: str) -> web.StreamResponse:
        """``GET /jobs/{job_id}/download/{file_id}``: the stored bytes, streamed."""
        job = self._user_job(
            request, job_id, "Job not found, or does not belong to you", SCOPE_READ
        )
        if job.output_files is None:  # live: `file_id in None` raises
            raise HTTPError.server_error()
        info = job.output_files.get(file_id)
        if info is None:
            raise HTTPError(404, f"Job output file not found job_id={job_id!r} file_id={file_id!r}")
        blob = self.blobs.blob_path(job_id, file_id)
        filename: str = info["filename"]
        if not blob.is_file() or not _header_safe(filename):
            raise HTTPError.server_error()  # live: Content-Disposition cannot carry the name
        range_support = self.options.range_support and not self.options.live_quirks
        fault = request.get(FAULT_KEY)
        return await send_file(
            request, blob, filename=filename, range_support=range_support, fault=fault
        )

    def _user_job(self, request: web.Request, job_id: str, not_found: str, scope: str) -> JobRecord:
        user = authenticate(request, None, self.store, scope)
        job = self.store.user_job(job_id, user.user_id)
        if job is None:
            raise HTTPError(404, not_found)
        return job

    # -- worker routes -------------------------------------------------------------------

    async def finish(self, request: web.Request, job_id: str) -> web.Response:
        """``POST /jobs/{job_id}?token=``: record the outcome, list outputs, hand out URLs."""
        job = self._token_job(request, job_id)
        _refuse_finished(job)
        payload = await _json_object(request)
        status = payload.pop("status", "error")
        filenames = payload.pop("output_filenames", None) or []
        if not isinstance(status, str) or not _all_strings(filenames):
            raise HTTPError.server_error()
        result = payload.pop("result", "error" if self.options.live_quirks else None)
        if not _is_object_or_null(result) and not self.options.live_quirks:
            raise HTTPError(422, [_dict_type_error(result)])
        job.status = "complete_pending_uploads" if status == "complete" and filenames else status
        job.result = jsonb_order(result)
        job.error_detail = payload.pop("detail", None)
        job.output_files, urls = self._output_list(job, filenames)
        job.touch()
        if not _is_object_or_null(job.result):  # live: stored, then the response fails
            raise HTTPError.server_error()
        return self._job_response(job, upload_urls=urls)

    def _output_list(
        self, job: JobRecord, filenames: list[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        files: dict[str, dict[str, Any]] = {}
        urls: dict[str, str] = {}
        base = self._base_url()
        for name in filenames:
            token = self.tokens.issue(job.job_id, filename=name)
            files[file_id_for(job.job_id, name)] = {
                "filename": name,
                "path": job.storage_key(name),
                "uploaded": False,
            }
            urls[name] = f"{base}/jobs/{job.job_id}/upload?token={token}"
        return jsonb_order(files), urls

    async def upload(self, request: web.Request, job_id: str) -> web.Response:
        """``PUT /jobs/{job_id}/upload?token=``: one output file, streamed to disk."""
        form = await read_upload_form(request, self.blobs)
        try:
            return self._store_upload(request, job_id, form)
        finally:
            form.discard()

    def _store_upload(self, request: web.Request, job_id: str, form: UploadForm) -> web.Response:
        _check_upload_fields(request, form)
        assert form.path is not None and form.tmp_file is not None
        job = self._token_job(request, job_id, filename=form.path)
        _refuse_finished(job)
        if job.output_files is None:  # live: `file_id not in None` raises
            raise HTTPError.server_error()
        file_id = file_id_for(job_id, form.path)
        info = job.output_files.get(file_id)
        if info is None:
            raise HTTPError(404, f"File {form.path} not found in job output files")
        self.blobs.commit(form.tmp_file, job_id, file_id)
        form.tmp_file = None
        info["uploaded"] = True
        return json_response(
            {
                "status": "success",
                "filename": form.path,
                "file_id": file_id,
                "path": info["path"],
                "uploaded": True,
            }
        )

    async def complete(self, request: web.Request, job_id: str) -> web.Response:
        """``PUT /jobs/{job_id}?token=``: close the job; missing uploads -> partial failure."""
        job = self._token_job(request, job_id)
        _refuse_finished(job)
        await request.release()
        self._settle_uploads(job)
        job.finished_at = job.updated_at = utcnow()
        job.instance = None
        if not _is_object_or_null(job.result):  # live: committed, then the response fails
            raise HTTPError.server_error()
        return self._job_response(job)

    def _settle_uploads(self, job: JobRecord) -> None:
        files = list((job.output_files or {}).values())
        missing = [f["filename"] for f in files if not f["uploaded"]]
        succeeded = job.status.startswith("complete")
        if not missing:
            if files and succeeded:
                job.status = "complete"
            return
        note = f"Failed to upload files: {', '.join(missing)}"
        if succeeded:
            job.status, job.error_detail = "partial_failure", note
        elif job.error_detail is not None:
            job.error_detail += f"\n{note}"
        elif self.options.live_quirks:  # live: None += str
            raise HTTPError.server_error()
        else:
            job.error_detail = note

    def _token_job(
        self, request: web.Request, job_id: str, filename: str | None = None
    ) -> JobRecord:
        """The job a worker token opens, with the live server's checks and 401 texts."""
        token = request.query.get("token")
        if token is None:
            raise HTTPError(422, [missing_field("query", "token")])
        try:
            self.tokens.check(token, job_id, filename)
        except InvalidToken as exc:
            raise HTTPError(401, "Missing or invalid JWT") from exc
        job = self.store.jobs.get(job_id)
        if job is None:
            raise HTTPError(401, f"job_id={job_id!r} not found!")
        if filename and job.output_files and file_id_for(job_id, filename) not in job.output_files:
            raise HTTPError(
                401, f"job_id={job_id!r} did not have any output file with filename={filename!r}"
            )
        return job

    def _job_response(
        self, job: JobRecord, *, upload_urls: dict[str, str] | None = None
    ) -> web.Response:
        if not _is_object_or_null(job.result):
            raise HTTPError.server_error()  # live: the response model refuses the stored result
        data = job.to_json(include_status=self.options.expose_status, upload_urls=upload_urls)
        return json_response(data)


def _disk_gb(value: Any) -> int:
    """The live ``_disk_gb`` rule: ``10 < x < 1000`` (bools refused); null or absent -> 10."""
    if value is None:
        return 10
    if not isinstance(value, int | float) or not 10 < value < 1000:
        raise HTTPError(400, f"Invalid disk size specified: {value}")
    return int(value)


#: What uvicorn refuses in a header value: C0 controls but tab, and DEL.
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _header_safe(name: str) -> bool:
    """Whether ``name`` fits the live download's ``Content-Disposition`` header (latin-1,
    no newline or other control character)."""
    try:
        name.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return _HEADER_UNSAFE.search(name) is None


def _all_strings(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) for v in values)


def _refuse_finished(job: JobRecord) -> None:
    if job.finished_at is not None:
        raise HTTPError(400, "Job already finished")


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; anything else crashes the live route (bare 500)."""
    try:
        payload = json.loads(await request.read())
    except ValueError as exc:
        raise HTTPError.server_error() from exc
    if not isinstance(payload, dict):
        raise HTTPError.server_error()
    return payload


def _dict_type_error(value: Any) -> dict[str, Any]:
    return {
        "type": "dict_type",
        "loc": ["body", "result"],
        "msg": "Input should be a valid dictionary",
        "input": value,
    }


def _check_upload_fields(request: web.Request, form: UploadForm) -> None:
    """FastAPI's validation of ``token``, ``file`` and ``path``: one 422 listing every miss."""
    errors: list[dict[str, Any]] = []
    if request.query.get("token") is None:
        errors.append(missing_field("query", "token"))
    if form.tmp_file is None and form.file_as_text is not None:
        errors.append(
            {
                "type": "value_error",
                "loc": ["body", "file"],
                "msg": "Value error, Expected UploadFile, received: <class 'str'>",
                "input": form.file_as_text[:1000],
                "ctx": {"error": {}},
            }
        )
    elif form.tmp_file is None:
        errors.append(missing_field("body", "file"))
    if not form.path:  # FastAPI reads an empty form field as missing
        errors.append(missing_field("body", "path"))
    if errors:
        raise HTTPError(422, errors)
