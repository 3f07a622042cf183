"""The store stage against a real S3 server (SeaweedFS from the conftest fixture)."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.stub import Stubber
from support import free_port

from archiver.config import DEFAULT_KEY_TEMPLATE, S3Config
from archiver.lab.seaweed import SeaweedS3
from archiver.names import Recording, parse_name
from archiver.s3 import (
    METADATA_FIELDS,
    ConflictError,
    ObjectMetadata,
    S3Store,
    StoreError,
    object_key,
    object_metadata,
)

ISTANBUL = ZoneInfo("Europe/Istanbul")
TRUNK = "trunk-sip-908502591905"
NAME = "20161118-110332-100-903123320404-1479456211.1297-25.gsm"
MIB = 1024 * 1024


def recording(name: str = NAME, folder: str = TRUNK, pbx: str = "pbx") -> Recording:
    return parse_name(pbx, folder, name, ISTANBUL)


def source_sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


class Mp3:
    """A file to upload with its digests, as the transcode stage hands it over."""

    def __init__(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)
        self.path = path
        self.size = len(data)
        digest = hashlib.md5(data, usedforsecurity=False)
        self.md5_hex = digest.hexdigest()
        self.md5_b64 = base64.b64encode(digest.digest()).decode()

    def metadata(self, rec: Recording, source: str = "a", **extra: str) -> dict[str, str]:
        return object_metadata(
            rec, source_sha256=source_sha(source), md5_b64=self.md5_b64, extra=extra
        )


def put(store: S3Store, mp3: Mp3, key: str, metadata: dict[str, str]) -> Any:
    return store.put_verified(mp3.path, key, metadata, md5_b64=mp3.md5_b64, md5_hex=mp3.md5_hex)


@pytest.fixture
def mp3(tmp_path: Path) -> Mp3:
    return Mp3(tmp_path / "call.mp3", b"ID3" + os.urandom(20_000))


@pytest.fixture
def store(s3_env: dict[str, str], s3_config: S3Config) -> S3Store:
    """A store built from configuration and the default credential chain, as the daemon does."""
    return S3Store(s3_config)


@pytest.fixture
def counted(seaweed: SeaweedS3, s3_config: S3Config) -> Iterator[tuple[S3Store, list[str]]]:
    """A store whose client records the name of every request it sends."""
    client = seaweed.client()
    sent: list[str] = []

    def record(**kwargs: Any) -> None:
        sent.append(kwargs["event_name"].rsplit(".", 1)[-1])

    client.meta.events.register("before-send.s3", record)
    yield S3Store(s3_config, client=client), sent


# -- object_key ---------------------------------------------------------------------------------


def test_object_key_default_template() -> None:
    key = object_key(recording(), DEFAULT_KEY_TEMPLATE, "recordings")
    assert key == "recordings/pbx/2016/11/18/20161118-110332_100_903123320404_1479456211.1297.mp3"


def test_object_key_custom_template_uses_every_field() -> None:
    template = (
        "{prefix}/{pbx}/{trunk}/{yyyymmdd}/{hhmmss}-{duration_s:05d}-{uniqueid}/{source_name}"
    )
    key = object_key(recording(pbx="istanbul-1"), template, "a/b")
    assert key == (
        "a/b/istanbul-1/trunk-sip-908502591905/20161118/110332-00025-1479456211.1297/"
        "20161118-110332-100-903123320404-1479456211.1297-25.gsm"
    )


def test_object_key_dates_are_pbx_local_time() -> None:
    # 23:30 in Istanbul is 20:30 UTC the same day; 00:30 is 21:30 UTC the day before.
    rec = recording("20161231-003015-100-200-1483137015.7-3.gsm")
    assert object_key(rec, "{yyyy}/{mm}/{dd}/{hhmmss}_{uniqueid}", "p") == (
        "2016/12/31/003015_1483137015.7"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Empty caller: the key keeps its shape and reads back (an empty field, not "unknown").
        (
            "20161118-110332--903123320404-1479456211.1297-25.gsm",
            "r/pbx/2016/11/18/20161118-110332__903123320404_1479456211.1297.mp3",
        ),
        (
            "20161118-110332-+905321234567-100-1479456211.1297-25.gsm",
            "r/pbx/2016/11/18/20161118-110332_+905321234567_100_1479456211.1297.mp3",
        ),
        (
            "20161118-110332-anonymous--pbx_east-1479456211.1297-0.wav49",
            "r/pbx/2016/11/18/20161118-110332_anonymous__pbx_east-1479456211.1297.mp3",
        ),
    ],
)
def test_object_key_odd_names(name: str, expected: str) -> None:
    assert object_key(recording(name), DEFAULT_KEY_TEMPLATE, "r") == expected


def test_object_key_empty_party_as_a_whole_segment_becomes_dash() -> None:
    rec = recording("20161118-110332--100-1479456211.1297-25.gsm")
    assert object_key(rec, "{prefix}/{caller}/{uniqueid}.mp3", "r") == "r/-/1479456211.1297.mp3"


@pytest.mark.parametrize(
    ("template", "prefix"),
    [
        ("{prefix}/{uniqueid}.mp3", ".."),
        ("{prefix}/{uniqueid}.mp3", "a/./b"),
        ("{prefix}/{uniqueid}/", "r"),
        ("{prefix}/{uniqueid}.mp3", "x" * 1100),
    ],
)
def test_object_key_refuses_unsafe_keys(template: str, prefix: str) -> None:
    with pytest.raises(ValueError, match="key"):
        object_key(recording(), template, prefix)


# -- object_metadata ----------------------------------------------------------------------------


def test_object_metadata_exact_names_and_values(mp3: Mp3) -> None:
    metadata = object_metadata(
        recording(),
        source_sha256=source_sha("a"),
        md5_b64=mp3.md5_b64,
        extra={"dial-status": "ANSWER"},
    )
    assert list(metadata) == [*METADATA_FIELDS, "dial-status"]
    assert metadata == {
        "pbx": "pbx",
        "trunk": TRUNK,
        "caller": "100",
        "callee": "903123320404",
        "started-at": "2016-11-18T11:03:32+03:00",
        "duration-s": "25",
        "uniqueid": "1479456211.1297",
        "source-name": NAME,
        "source-sha256": source_sha("a"),
        "md5": mp3.md5_b64,
        "dial-status": "ANSWER",
    }


def test_object_metadata_leaves_empty_values_out(mp3: Mp3) -> None:
    rec = recording("20161118-110332--100-1479456211.1297-25.gsm")
    metadata = object_metadata(rec, source_sha256=source_sha("a"), md5_b64=mp3.md5_b64)
    assert "caller" not in metadata
    assert metadata["callee"] == "100"


@pytest.mark.parametrize(
    "extra",
    [
        {"md5": "x"},
        {"Dial-Status": "x"},
        {"dial status": "x"},
        {"note": "\u00e7a\u011fr\u0131"},
        {"note": " x"},
    ],
)
def test_object_metadata_refuses_bad_extra(mp3: Mp3, extra: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="metadata"):
        object_metadata(
            recording(), source_sha256=source_sha("a"), md5_b64=mp3.md5_b64, extra=extra
        )


def test_object_metadata_reads_back_as_written(mp3: Mp3) -> None:
    """`from_headers` is the inverse of `headers`: the names written, and only they, are the
    fields of `ObjectMetadata` (a missing caller reads as empty; unknown names go to extra)."""
    rec = recording("20161118-110332--100-1479456211.1297-25.gsm")
    written = ObjectMetadata.for_recording(
        rec,
        source_sha256=source_sha("a"),
        md5_b64=mp3.md5_b64,
        outcome="empty",
        reason="header only",
        extra={"dial-status": "BUSY"},
    )
    headers = written.headers()
    assert list(headers)[-3:] == ["outcome", "reason", "dial-status"]
    assert ObjectMetadata.from_headers(headers) == written
    assert set(METADATA_FIELDS) | {"outcome", "reason", "dial-status"} >= set(headers)


# -- against SeaweedFS --------------------------------------------------------------------------


def test_metadata_round_trips_through_seaweedfs(store: S3Store, mp3: Mp3) -> None:
    rec = recording("20161118-110332-+905321234567-100-pbx_east-1479456211.1297-25.gsm")
    metadata = mp3.metadata(rec, **{"dial-status": "NOANSWER"})
    put(store, mp3, "k/round-trip.mp3", metadata)
    info = store.head("k/round-trip.mp3")
    assert info is not None
    assert info.metadata == metadata
    assert info.content_type == "audio/mpeg"


def test_empty_metadata_value_is_absent_after_round_trip(store: S3Store, mp3: Mp3) -> None:
    rec = recording("20161118-110332--100-1479456211.1297-25.gsm")
    put(store, mp3, "k/empty-caller.mp3", mp3.metadata(rec))
    info = store.head("k/empty-caller.mp3")
    assert info is not None
    assert "caller" not in info.metadata
    assert info.metadata["callee"] == "100"


def test_put_verified_uploads_and_verifies(
    store: S3Store, mp3: Mp3, seaweed: SeaweedS3, bucket: str
) -> None:
    stored = put(store, mp3, "k/call.mp3", mp3.metadata(recording()))
    assert stored.key == "k/call.mp3"
    assert stored.size_bytes == mp3.size
    assert stored.md5_b64 == mp3.md5_b64
    assert stored.etag == mp3.md5_hex
    assert stored.already_present is False
    body = seaweed.client().get_object(Bucket=bucket, Key="k/call.mp3")["Body"].read()
    assert body == mp3.path.read_bytes()


def test_second_put_of_same_source_sends_no_put(
    counted: tuple[S3Store, list[str]], mp3: Mp3
) -> None:
    store, sent = counted
    metadata = mp3.metadata(recording())
    first = put(store, mp3, "k/once.mp3", metadata)
    assert sent == ["HeadObject", "PutObject", "HeadObject"]
    sent.clear()
    before = store.head("k/once.mp3")
    again = put(store, mp3, "k/once.mp3", metadata)
    assert again.already_present is True
    assert again.etag == first.etag
    assert "PutObject" not in sent
    after = store.head("k/once.mp3")
    assert before is not None and after is not None
    assert after.last_modified == before.last_modified


def test_conflicting_source_is_refused_and_left_alone(
    store: S3Store, mp3: Mp3, tmp_path: Path, seaweed: SeaweedS3, bucket: str
) -> None:
    put(store, mp3, "k/taken.mp3", mp3.metadata(recording(), source="first"))
    other = Mp3(tmp_path / "other.mp3", b"ID3 other bytes")
    with pytest.raises(ConflictError) as caught:
        put(store, other, "k/taken.mp3", other.metadata(recording(), source="second"))
    assert caught.value.transient is False
    assert source_sha("first") in caught.value.reason
    info = store.head("k/taken.mp3")
    assert info is not None
    assert info.metadata["source-sha256"] == source_sha("first")
    body = seaweed.client().get_object(Bucket=bucket, Key="k/taken.mp3")["Body"].read()
    assert body == mp3.path.read_bytes()


def test_object_without_source_metadata_is_a_conflict(
    store: S3Store, mp3: Mp3, seaweed: SeaweedS3, bucket: str
) -> None:
    seaweed.client().put_object(Bucket=bucket, Key="k/foreign.mp3", Body=b"not ours")
    with pytest.raises(ConflictError, match="missing"):
        put(store, mp3, "k/foreign.mp3", mp3.metadata(recording()))


def test_same_source_with_other_bytes_is_replaced(store: S3Store, mp3: Mp3, tmp_path: Path) -> None:
    # An earlier attempt of ours stored other bytes (e.g. it failed verification): replace them.
    earlier = Mp3(tmp_path / "earlier.mp3", b"ID3 truncated")
    put(store, earlier, "k/again.mp3", earlier.metadata(recording()))
    stored = put(store, mp3, "k/again.mp3", mp3.metadata(recording()))
    assert stored.already_present is False
    assert stored.size_bytes == mp3.size


def test_big_file_goes_multipart_and_verifies_by_md5_metadata(
    s3_env: dict[str, str], s3_config: S3Config, tmp_path: Path
) -> None:
    transfer = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    store = S3Store(s3_config, transfer=transfer)
    big = Mp3(tmp_path / "big.mp3", os.urandom(11 * MIB))
    stored = put(store, big, "k/big.mp3", big.metadata(recording()))
    assert stored.etag.endswith("-3")  # three parts; the ETag is not the file's MD5
    assert stored.etag != big.md5_hex
    assert stored.size_bytes == 11 * MIB
    assert put(store, big, "k/big.mp3", big.metadata(recording())).already_present


def test_iter_objects_yields_keys_with_metadata(store: S3Store, mp3: Mp3) -> None:
    names = {
        "20161118-110332-100-200-1479456211.1-5.gsm",
        "20161118-110333-101-201-1479456212.2-6.gsm",
        "20161118-110334-102-202-1479456213.3-7.gsm",
    }
    for name in names:
        rec = recording(name)
        put(store, mp3, object_key(rec, DEFAULT_KEY_TEMPLATE, "in"), mp3.metadata(rec))
    put(store, mp3, "out/elsewhere.mp3", mp3.metadata(recording()))
    found = {info.key: info.metadata for info in store.iter_objects("in/")}
    assert len(found) == 3
    assert {metadata["source-name"] for metadata in found.values()} == names
    assert all(key.startswith("in/pbx/2016/11/18/") for key in found)


def test_abort_stale_multipart(store: S3Store, seaweed: SeaweedS3, bucket: str) -> None:
    client = seaweed.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key="in/abandoned.mp3")
    client.upload_part(
        Bucket=bucket, Key="in/abandoned.mp3", UploadId=upload["UploadId"], PartNumber=1, Body=b"x"
    )
    client.create_multipart_upload(Bucket=bucket, Key="out/other.mp3")
    assert store.abort_stale_multipart("in/", older_than_s=3600) == 0
    assert store.abort_stale_multipart("in/", older_than_s=0) == 1
    assert client.list_multipart_uploads(Bucket=bucket, Prefix="in/").get("Uploads", []) == []
    assert len(client.list_multipart_uploads(Bucket=bucket, Prefix="out/")["Uploads"]) == 1


def test_check_access(store: S3Store, s3_config: S3Config) -> None:
    """Quiet for a reachable bucket; a transient, classified error at once (botocore does not
    retry: the daemon's one retry layer does) when nothing listens at the endpoint."""
    store.check_access()  # raises if it cannot reach the bucket
    nowhere = s3_config.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        S3Store(nowhere).check_access()
    assert (caught.value.transient, caught.value.kind) == (True, "connect")
    assert time.monotonic() - started < 5


def test_missing_bucket_is_not_transient(s3_env: dict[str, str], seaweed: SeaweedS3) -> None:
    store = S3Store(
        S3Config(
            bucket="no-such-bucket-here", endpoint_url=seaweed.endpoint_url, region="us-east-1"
        )
    )
    with pytest.raises(StoreError) as caught:
        store.check_access()
    assert caught.value.transient is False
    assert "404" in caught.value.reason


def test_wrong_secret_is_not_transient_and_not_logged(
    s3_env: dict[str, str],
    s3_config: S3Config,
    mp3: Mp3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "wrong-secret-key-0123456789abcdef"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    store = S3Store(s3_config)
    for call in (store.check_access, lambda: put(store, mp3, "k/x.mp3", mp3.metadata(recording()))):
        with pytest.raises(StoreError) as caught:
            call()
        error = caught.value
        assert error.transient is False
        assert "403" in error.reason
        for text in (error.reason, str(error), repr(error)):
            assert wrong not in text
            assert s3_env["AWS_SECRET_ACCESS_KEY"] not in text
        assert error.__cause__ is None


def test_wrong_secret_on_put_is_signature_mismatch(
    seaweed: SeaweedS3, s3_config: S3Config, mp3: Mp3, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the HEAD (which has no error body), the PUT names the cause.
    wrong = "another-wrong-secret-9876543210"
    store = S3Store(s3_config, client=seaweed.client(secret_key=wrong))
    monkeypatch.setattr(store, "head", lambda key: None)
    with pytest.raises(StoreError) as caught:
        put(store, mp3, "k/x.mp3", mp3.metadata(recording()))
    assert caught.value.transient is False
    assert "SignatureDoesNotMatch" in caught.value.reason
    assert wrong not in caught.value.reason


@pytest.mark.parametrize(
    ("code", "status", "transient", "kind"),
    [
        ("SlowDown", 503, True, "throttled"),
        ("InternalError", 500, True, "http_5xx"),
        ("RequestTimeout", 400, True, "timeout"),
        ("BadDigest", 400, True, "http_status"),
        ("TooManyRequests", 429, True, "throttled"),
        ("AccessDenied", 403, False, "refused"),
        ("NoSuchBucket", 404, False, "not_found"),
        ("InvalidAccessKeyId", 403, False, "refused"),
        ("SignatureDoesNotMatch", 403, False, "refused"),
    ],
)
def test_error_classification(
    seaweed: SeaweedS3,
    s3_config: S3Config,
    mp3: Mp3,
    code: str,
    status: int,
    transient: bool,
    kind: str,
) -> None:
    """Transient or not, and the kind, come from the code and status: a message that says
    "timed out" does not make an error a timeout."""
    # Throttling and 5xx cannot be provoked from SeaweedFS on demand: botocore's Stubber stands in.
    client = seaweed.client()
    store = S3Store(s3_config, client=client)
    with Stubber(client) as stubber:
        stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stubber.add_client_error(
            "put_object",
            service_error_code=code,
            service_message="the request timed out (timeout)",
            http_status_code=status,
        )
        with pytest.raises(StoreError) as caught:
            put(store, mp3, "k/x.mp3", mp3.metadata(recording()))
    assert caught.value.transient is transient
    assert caught.value.kind == kind
    assert code in caught.value.reason


def test_outage_is_transient_and_loses_nothing(
    s3_env: dict[str, str], mp3: Mp3, tmp_path: Path
) -> None:
    with SeaweedS3(tmp_path / "weed") as server:
        server.create_bucket("outage")
        cfg = S3Config(bucket="outage", endpoint_url=server.endpoint_url, region="us-east-1")
        store = S3Store(cfg)
        put(store, mp3, "k/before.mp3", mp3.metadata(recording(), source="before"))

        server.pause()  # accepts connections, never answers: a read timeout
        hung = S3Store(cfg, client=server.client(max_attempts=1, timeout_s=0.5))
        with pytest.raises(StoreError) as caught:
            hung.check_access()
        assert caught.value.transient is True
        server.resume()

        server.stop()
        with pytest.raises(StoreError) as caught:
            put(store, mp3, "k/during.mp3", mp3.metadata(recording(), source="during"))
        assert caught.value.transient is True
        assert "EndpointConnectionError" in caught.value.reason

        server.start()
        assert server.endpoint_url == cfg.endpoint_url
        assert store.head("k/before.mp3") is not None
        stored = put(store, mp3, "k/during.mp3", mp3.metadata(recording(), source="during"))
        assert stored.already_present is False


def test_seaweed_is_local_only(seaweed: SeaweedS3) -> None:
    command = Path(f"/proc/{seaweed.pid}/cmdline").read_bytes().split(b"\0")
    for flag in (
        b"-ip=127.0.0.1",
        b"-ip.bind=127.0.0.1",
        b"-master.telemetry=false",
        b"-master.telemetry.url=http://127.0.0.1:9/",
        b"-webdav=false",
        b"-admin.ui=false",
    ):
        assert flag in command
    assert seaweed.last_start_s is not None and seaweed.last_start_s < 30
