"""The Job model reads what the live server sends (docs/PROTOCOL.md, "The Job object")."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chutes_jobs import Job, JobState, OutputFile, file_id_for
from chutes_jobs.models import job_from_json, job_to_json

JOB_ID = "8c1d6f0e-3a52-4b7e-9f21-6d0b3c9e4a17"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI4YzFkNmYwZSJ9.dXBsb2FkLXNpZw"


def fid(name: str) -> str:
    return str(uuid.uuid5(uuid.UUID(JOB_ID), name))


#: A finished job as GET /jobs/{id} answers it on the live server: database key order, naive
#: UTC timestamps, no status/error_detail, instance dropped after complete.
LIVE_FINISHED: dict[str, Any] = {
    "job_id": JOB_ID,
    "user_id": "dff3e6bb-3a6b-5a2b-9c27-6a1bd3a4f6b2",
    "chute_id": "5b1a4c0e-6e2f-5d1b-9b8e-1c2d3e4f5a6b",
    "version": "0b5f4c9b-6a0d-5b1e-8f7a-3c2d1e0f9a8b",
    "chutes_version": "0.3.26",
    "method": "train",
    "instance_id": None,
    "active": False,
    "verified": True,
    "last_queried_at": "2025-06-01T12:30:05.118273",
    "created_at": "2025-06-01T12:00:00.004512",
    "updated_at": "2025-06-01T12:29:59.871003",
    "finished_at": "2025-06-01T12:29:59.871003",
    "job_args": {"dataset": "s3://bucket/train.jsonl", "epochs": 3, "_disk_gb": 50},
    "result": {"loss": 0.0412, "steps": 1200},
    "output_files": {
        fid("model/adapter.safetensors"): {
            "filename": "model/adapter.safetensors",
            "path": f"jobs/{JOB_ID}/model/adapter.safetensors",
            "uploaded": True,
        },
        fid("_chute.log"): {
            "filename": "_chute.log",
            "path": f"jobs/{JOB_ID}/_chute.log",
            "uploaded": True,
        },
    },
    "host": None,
    "port_mappings": [{"proto": "tcp", "internal_port": 8000, "external_port": 32011}],
    "chute": {
        "chute_id": "5b1a4c0e-6e2f-5d1b-9b8e-1c2d3e4f5a6b",
        "name": "lora-trainer",
        "public": False,
        "version": "0b5f4c9b-6a0d-5b1e-8f7a-3c2d1e0f9a8b",
        "slug": "someone-lora-trainer",
        "chutes_version": "0.3.26",
        "preemptible": True,
        "image": {
            "image_id": "1f2e3d4c-5b6a-5978-8a9b-0c1d2e3f4a5b",
            "name": "trainer",
            "tag": "0.1.4",
            "user": {"username": "someone"},
        },
    },
    "instance": None,
    "output_storage_urls": {},
}


def running_job() -> dict[str, Any]:
    data = copy.deepcopy(LIVE_FINISHED)
    data.update(
        instance_id="c7a1e5f2-9b3d-4e6a-8f10-2d4c6b8a0e1f",
        active=True,
        finished_at=None,
        result=None,
        output_files=None,
        instance={
            "instance_id": "c7a1e5f2-9b3d-4e6a-8f10-2d4c6b8a0e1f",
            "region": "us-east",
            "active": True,
            "verified": True,
            "last_verified_at": "2025-06-01T12:01:10.500000",
        },
    )
    return data


def test_live_job_round_trips() -> None:
    job = job_from_json(LIVE_FINISHED)
    assert job_to_json(job) == LIVE_FINISHED


def test_live_job_fields_are_typed() -> None:
    job = job_from_json(LIVE_FINISHED)
    assert job.job_args["_disk_gb"] == 50
    assert job.result == {"loss": 0.0412, "steps": 1200}
    assert job.chute is not None and job.chute.name == "lora-trainer"
    assert job.chute.image == LIVE_FINISHED["chute"]["image"]
    log = job.output_files[fid("_chute.log")]
    assert log == OutputFile(
        file_id=fid("_chute.log"),
        filename="_chute.log",
        path=f"jobs/{JOB_ID}/_chute.log",
        uploaded=True,
    )
    assert job.status is None and job.error_detail is None


def test_running_job_with_instance_round_trips() -> None:
    data = running_job()
    job = job_from_json(data)
    assert job.instance is not None and job.instance.region == "us-east"
    assert job.instance.last_verified_at == datetime(2025, 6, 1, 12, 1, 10, 500000, tzinfo=UTC)
    expected = {**data, "output_files": {}}  # null comes back as "no files"
    assert job_to_json(job) == expected


def test_status_and_error_detail_are_read_when_sent() -> None:
    data = {**LIVE_FINISHED, "status": "partial_failure", "error_detail": "missing: a.png"}
    job = job_from_json(data)
    assert (job.status, job.error_detail) == ("partial_failure", "missing: a.png")
    assert job_to_json(job, include_status=True) == data
    assert "status" not in job_to_json(job)


@pytest.mark.parametrize("files", [[], None, {}])
def test_empty_output_files_in_any_shape_mean_no_files(files: Any) -> None:
    assert job_from_json({**LIVE_FINISHED, "output_files": files}).output_files == {}


def test_unknown_fields_are_ignored() -> None:
    data = {**LIVE_FINISHED, "priority": 3, "billing": {"usd": 0.12}, "new_thing": None}
    assert job_from_json(data) == job_from_json(LIVE_FINISHED)


def test_assumed_is_never_read_from_nor_written_to_json() -> None:
    """Only the client marks a Job it built itself; a server cannot claim the mark."""
    job = job_from_json({"job_id": "j", "assumed": True})
    assert job.assumed is False
    built = Job(job_id="j", finished_at=datetime.now(UTC), assumed=True)
    assert "assumed" not in job_to_json(built, include_status=True)
    assert job_from_json(job_to_json(built)).assumed is False


def test_naive_timestamps_are_read_as_utc_and_offsets_kept() -> None:
    job = job_from_json(LIVE_FINISHED)
    assert job.created_at == datetime(2025, 6, 1, 12, 0, 0, 4512, tzinfo=UTC)
    assert job.created_at is not None and job.created_at.utcoffset() == timedelta(0)
    shifted = job_from_json({**LIVE_FINISHED, "created_at": "2025-06-01T14:00:00+02:00"})
    assert shifted.created_at == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert shifted.created_at is not None
    assert shifted.created_at.tzinfo == timezone(timedelta(hours=2))


def test_file_id_for_is_uuid5_of_the_job_id() -> None:
    assert file_id_for(JOB_ID, "model/adapter.safetensors") == fid("model/adapter.safetensors")
    assert file_id_for(JOB_ID, "a.png") != file_id_for(JOB_ID, "b.png")
    assert set(job_from_json(LIVE_FINISHED).output_files) == {
        file_id_for(JOB_ID, "model/adapter.safetensors"),
        file_id_for(JOB_ID, "_chute.log"),
    }


def test_state_pending_running_finished() -> None:
    pending = {**running_job(), "instance_id": None, "instance": None}
    assert job_from_json(pending).state is JobState.PENDING
    assert job_from_json(running_job()).state is JobState.RUNNING
    assert job_from_json(LIVE_FINISHED).state is JobState.FINISHED
    assert job_from_json(LIVE_FINISHED).is_finished
    assert not job_from_json(running_job()).is_finished


def with_upload_state(uploaded: bool) -> dict[str, Any]:
    data = copy.deepcopy(LIVE_FINISHED)
    data["output_files"][fid("model/adapter.safetensors")]["uploaded"] = uploaded
    return data


@pytest.mark.parametrize(
    ("data", "failed"),
    [
        (LIVE_FINISHED, False),  # live, every listed file arrived
        (with_upload_state(False), True),  # live, a listed file never arrived
        ({**LIVE_FINISHED, "output_files": None}, False),  # live, nothing to tell
        ({**LIVE_FINISHED, "status": "complete"}, False),
        ({**LIVE_FINISHED, "status": "Completed"}, False),
        ({**LIVE_FINISHED, "status": "error"}, True),
        ({**LIVE_FINISHED, "status": "cancelled"}, True),
        ({**LIVE_FINISHED, "status": "partial_failure"}, True),
        ({**with_upload_state(False), "status": "complete"}, False),  # status wins
        ({**running_job(), "status": "error"}, False),  # not finished yet
    ],
)
def test_failed_rules(data: dict[str, Any], failed: bool) -> None:
    assert job_from_json(data).failed is failed


def test_file_lookup_by_id_or_name() -> None:
    job = job_from_json(LIVE_FINISHED)
    by_name = job.file("_chute.log")
    assert job.file(fid("_chute.log")) == by_name
    with pytest.raises(KeyError, match=r"nope\.bin"):
        job.file("nope.bin")


def test_upload_urls_are_kept_but_not_shown_in_repr() -> None:
    url = f"https://api.chutes.ai/jobs/{JOB_ID}/upload?token={TOKEN}"
    job = job_from_json({**running_job(), "output_storage_urls": {"a.png": url}})
    assert job.output_storage_urls == {"a.png": url}
    assert TOKEN not in repr(job)
    assert "a.png" in repr(job)


def test_job_is_frozen() -> None:
    job = job_from_json(LIVE_FINISHED)
    with pytest.raises(AttributeError):
        job.status = "complete"  # type: ignore[misc]
    assert isinstance(job, Job)
