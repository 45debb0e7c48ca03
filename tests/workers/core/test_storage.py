"""The storage interface, on the real S3 server and on the in-memory twin: both must behave alike."""

import pytest

from workers.core.errors import ObjectNotFound, StorageError, StorageUnavailable
from workers.core.storage import MemoryObjectStore, S3ObjectStore, TooLarge, parse_s3_url, s3_client


@pytest.fixture(params=["s3", "memory"])
def store(request):
    if request.param == "memory":
        return MemoryObjectStore()
    settings = request.getfixturevalue("s3_settings")
    return S3ObjectStore.from_settings(settings)


def test_put_get_head_list_delete(store):
    store.put("a/1.bin", b"one", metadata={"sha256": "x1"})
    store.put("a/2.bin", b"two!")
    store.put("b/3.bin", b"three")
    obj = store.get("a/1.bin")
    assert obj.data == b"one" and obj.metadata["sha256"] == "x1"
    assert store.head("a/2.bin")[0] == 4
    assert sorted(store.list("a/")) == ["a/1.bin", "a/2.bin"]
    store.delete("a/1.bin")
    assert not store.exists("a/1.bin") and store.exists("a/2.bin")


def test_missing_key_is_object_not_found(store):
    with pytest.raises(ObjectNotFound):
        store.get("nope")


def test_max_bytes_refuses_before_reading(store):
    store.put("big", b"x" * 1000)
    with pytest.raises(TooLarge) as info:
        store.get("big", max_bytes=999)
    assert info.value.size == 1000
    assert store.get("big", max_bytes=1000).data == b"x" * 1000


def test_wrong_credentials_are_a_storage_error_not_botocore(s3_settings):
    bad = S3ObjectStore(s3_client(s3_settings.with_(s3_secret_key="wrong")), s3_settings.s3_bucket)
    with pytest.raises(StorageError) as info:
        bad.get("anything")
    assert not isinstance(info.value, StorageUnavailable)


def test_unreachable_server_is_transient(s3_settings):
    from producer.dev.services import free_port

    gone = S3ObjectStore.from_settings(s3_settings.with_(s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(StorageUnavailable):
        gone.ping()


def test_memory_twin_can_be_taken_down():
    store = MemoryObjectStore(down=True)
    with pytest.raises(StorageUnavailable):
        store.put("k", b"v")


def test_parse_s3_url():
    assert parse_s3_url("s3://bucket/some/prefix/") == ("bucket", "some/prefix")
    with pytest.raises(ValueError):
        parse_s3_url("/local/path")
