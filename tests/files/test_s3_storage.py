"""The S3 backend for real: obstore against moto's S3 server on 127.0.0.1 (real HTTP, SigV4)."""

import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from app.core.config import Settings
from tests.factories import create_project, signed_in
from tests.files.documents import make_pdf
from tests.files.steps import file_of, run_worker, upload

BUCKET = "bazaar-knowledge"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[Any]:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=BUCKET)
    yield s3
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def settings_changes(s3_endpoint: str) -> dict[str, Any]:
    return {
        "file_storage": "s3",
        "s3_bucket": BUCKET,
        "s3_endpoint_url": s3_endpoint,
        "s3_region": "us-east-1",
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test",
    }


def objects(s3: Any) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read() for item in listed}


async def test_upload_download_process_and_delete_through_s3(
    client: httpx.AsyncClient, settings: Settings, bucket: Any
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    content = make_pdf("Every hull carries a lifetime warranty.")

    file = await upload(client, owner, project, "warranty.pdf", content)

    assert list(objects(bucket).values()) == [content]
    assert file["sha256"] == hashlib.sha256(content).hexdigest()
    downloaded = await client.get(file["url"], headers=owner.headers)
    assert downloaded.content == content
    await run_worker(settings)
    assert (await file_of(client, owner, file["id"]))["status"] == "ready"
    assert (await client.delete(f"/api/files/{file['id']}", headers=owner.headers)).status_code == 204
    assert objects(bucket) == {}
    assert not [p for p in settings.local_files_dir().rglob("*") if p.is_file()], (
        "nothing goes to the local folder"
    )


async def test_a_file_larger_than_one_part_is_uploaded_in_parts(
    client: httpx.AsyncClient, bucket: Any
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    content = b"".join(b"line %07d of a long catalogue\n" % i for i in range(200_000))  # 6.2 MB: two parts
    assert len(content) > 5 * 1024 * 1024

    file = await upload(client, owner, project, "catalogue.txt", content, process=False)

    assert list(objects(bucket).values()) == [content]
    downloaded = await client.get(file["url"], headers=owner.headers)
    assert hashlib.sha256(downloaded.content).hexdigest() == file["sha256"]


async def test_refused_uploads_leave_no_object_in_the_bucket(client: httpx.AsyncClient, bucket: Any) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)

    too_large = await client.post(
        f"/api/files/upload?projectId={project}",
        content=_chunked_multipart(b"k" * (10 * 1024 * 1024 + 1)),
        headers={**owner.headers, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    unsupported = await client.post(
        "/api/files/upload",
        data={"projectId": str(project)},
        files={"file": ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 100)},
        headers=owner.headers,
    )

    assert too_large.status_code == 413, too_large.text
    assert unsupported.status_code == 415, unsupported.text
    assert objects(bucket) == {}


async def _chunked_multipart(content: bytes) -> Any:
    yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
    for start in range(0, len(content), 512 * 1024):
        yield content[start : start + 512 * 1024]
    yield b"\r\n--xyz--\r\n"
