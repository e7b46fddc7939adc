"""Tests of bookstore.testing: real moto and SeaweedFS servers, and the cuttable TCP proxy."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from helpers import wait_until

from bookstore.testing import (
    S3Server,
    S3ServerError,
    TcpProxy,
    _volume_problem,
    start_moto,
    start_s3,
    start_seaweedfs,
)

KINDS = ["moto", "seaweedfs"]
FAST_FAIL: dict[str, Any] = {
    "connect_timeout": 1,
    "read_timeout": 3,
    "retries": {"max_attempts": 1, "mode": "standard"},
}


@pytest.fixture(scope="module")
def moto_server() -> Iterator[S3Server]:
    with start_moto() as server:
        yield server


@pytest.fixture(scope="module")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with start_s3("seaweedfs", tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest) -> S3Server:
    """Each test using this runs once against moto and once against SeaweedFS."""
    running: S3Server = request.getfixturevalue(f"{request.param}_server")
    return running


@pytest.fixture
def client(server: S3Server) -> Iterator[Any]:
    c = server.boto3_client()
    yield c
    c.close()


def new_bucket(s3: S3Server, versioning: bool = True) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"  # moto servers of one process share state
    s3.create_bucket(name, versioning=versioning)
    return name


def error_code(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_versioning_round_trip(server: S3Server, client: Any) -> None:
    bucket = new_bucket(server)
    client.head_bucket(Bucket=bucket)
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    key = "dir/Untitled 1.ipynb"
    metadata = {"bookstore-author": "ann", "path": "dir/Untitled%201.ipynb"}
    put_ids = []
    for i in range(3):
        response = client.put_object(
            Bucket=bucket,
            Key=key,
            Body=f"version {i}".encode(),
            ContentType="application/x-ipynb+json",
            Metadata={**metadata, "n": str(i)},
        )
        put_ids.append(response["VersionId"])
    assert len(set(put_ids)) == 3

    versions = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert [v["VersionId"] for v in versions] == put_ids[::-1]  # newest first
    assert [v["IsLatest"] for v in versions] == [True, False, False]
    assert all(v["Key"] == key for v in versions)

    for i, version_id in enumerate(put_ids):
        got = client.get_object(Bucket=bucket, Key=key, VersionId=version_id)
        assert got["Body"].read() == f"version {i}".encode()
        assert got["VersionId"] == version_id
        assert got["Metadata"] == {**metadata, "n": str(i)}
        assert got["ContentType"] == "application/x-ipynb+json"
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["VersionId"] == put_ids[-1]
    assert head["Metadata"]["n"] == "2"

    # A plain delete leaves a marker; old versions stay readable.
    assert client.delete_object(Bucket=bucket, Key=key)["DeleteMarker"] is True
    with pytest.raises(ClientError) as missing:
        client.get_object(Bucket=bucket, Key=key)
    assert error_code(missing.value) == ("NoSuchKey", 404)
    old = client.get_object(Bucket=bucket, Key=key, VersionId=put_ids[0])
    assert old["Body"].read() == b"version 0"


def test_unversioned_bucket_and_missing_bucket(server: S3Server, client: Any) -> None:
    bucket = new_bucket(server, versioning=False)
    assert "Status" not in client.get_bucket_versioning(Bucket=bucket)
    with pytest.raises(ClientError) as missing:
        client.put_object(Bucket=f"missing-{uuid.uuid4().hex[:12]}", Key="k", Body=b"x")
    assert error_code(missing.value) == ("NoSuchBucket", 404)


def test_seaweedfs_refuses_wrong_credentials(seaweedfs_server: S3Server) -> None:
    wrong_secret = seaweedfs_server.with_endpoint(seaweedfs_server.endpoint_url)
    wrong_secret.secret_access_key += "x"
    unknown_key = seaweedfs_server.with_endpoint(seaweedfs_server.endpoint_url)
    unknown_key.access_key_id = "NOSUCHKEY0000000000"
    for server, expected in [
        (wrong_secret, "SignatureDoesNotMatch"),
        (unknown_key, "InvalidAccessKeyId"),
    ]:
        c = server.boto3_client(**FAST_FAIL)
        try:
            with pytest.raises(ClientError) as refused:
                c.list_buckets()
        finally:
            c.close()
        assert error_code(refused.value) == (expected, 403)
    # The copies made by with_endpoint() do not own the server.
    wrong_secret.stop()
    good = seaweedfs_server.boto3_client(**FAST_FAIL)
    try:
        good.list_buckets()
    finally:
        good.close()


def test_proxy_cut_and_restore(server: S3Server) -> None:
    bucket = new_bucket(server)
    with TcpProxy(server.host, server.port) as proxy:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        c = server.with_endpoint(proxy.url).boto3_client(**FAST_FAIL)
        try:
            body = os.urandom(1 << 20)
            c.put_object(Bucket=bucket, Key="big", Body=body)
            assert c.get_object(Bucket=bucket, Key="big")["Body"].read() == body
            assert proxy.total_connections >= 1  # (moto closes connections, SeaweedFS keeps them)

            proxy.cut()
            assert proxy.is_cut
            # FAST_FAIL's timeouts and no retries: a hang would be a timeout error instead.
            with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
                c.list_objects_v2(Bucket=bucket)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
            wait_until(
                lambda: proxy.active_connections == 0, 3, "the proxy to close its connections"
            )

            proxy.restore()
            keys = [o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]]
            assert keys == ["big"]
        finally:
            c.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    proxy.stop()  # idempotent


def test_proxy_cut_resets_a_connection_in_use() -> None:
    """An upstream that never answers: cut() must end the blocked client read at once."""
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        with TcpProxy("127.0.0.1", upstream.getsockname()[1]) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
                conn.sendall(b"ping")
                accepted, _ = upstream.accept()
                with accepted:
                    assert accepted.recv(4) == b"ping"
                    accepted.sendall(b"pong")
                    assert conn.recv(4) == b"pong"
                    proxy.cut()
                    # Closed or reset at once (else recv times out after 5 s and fails).
                    try:
                        assert conn.recv(4) == b""
                    except ConnectionResetError:
                        pass


def test_seaweedfs_stop_and_restart_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "weed"
    server = start_seaweedfs(data_dir, access_key_id="RESTARTKEY", secret_access_key="s3cr3t")
    assert server.startup_seconds > 0
    assert server.pid is not None
    server.create_bucket("kept")
    c = server.boto3_client()
    try:
        c.put_object(Bucket="kept", Key="k", Body=b"before restart")
    finally:
        c.close()
    first_url, pid = server.endpoint_url, server.pid
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    assert not Path(f"/tmp/seaweedfs-s3-{server.port}.sock").exists()

    with start_seaweedfs(data_dir, access_key_id="RESTARTKEY", secret_access_key="s3cr3t") as again:
        assert again.endpoint_url == first_url  # free ports of the last run are reused
        c = again.boto3_client()
        try:
            assert c.get_object(Bucket="kept", Key="k")["Body"].read() == b"before restart"
            assert c.get_bucket_versioning(Bucket="kept")["Status"] == "Enabled"
        finally:
            c.close()


def test_start_s3_rejects_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="minio"):
        start_s3("minio", tmp_path)


def test_seaweedfs_start_failure_reports_the_log(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        # "exited with code": the failure is seen when weed exits, not at the 20 s timeout.
        with pytest.raises(S3ServerError, match=f"(?s)exited with code.*{port}"):
            start_seaweedfs(tmp_path / "weed", s3_port=port, timeout=20)


def _topology(max_volumes: int, data_nodes: int) -> dict[str, Any]:
    """The shape of the master's ``/dir/status`` (SeaweedFS 4.x)."""
    nodes = [{"Url": f"127.0.0.1:{8080 + i}", "Volumes": 0, "Max": 0} for i in range(data_nodes)]
    racks = [{"Id": "DefaultRack", "DataNodes": nodes}]
    return {"Topology": {"Max": max_volumes, "DataCenters": [{"Racks": racks}]}}


def test_seaweedfs_readiness_names_a_full_disk(tmp_path: Path) -> None:
    # Room for volumes: ready.
    assert _volume_problem(_topology(20000, 1), 10 * 2**30, tmp_path) is None
    # Nothing registered yet: wait.
    assert "no volume server registered" in str(_volume_problem(_topology(0, 0), 0, tmp_path))
    # Registered with room for nothing: weed sized it from the free space; say so.
    problem = str(_volume_problem(_topology(0, 1), 300 * 2**20, tmp_path))
    assert "300 MiB are free" in problem
    assert str(tmp_path) in problem
    assert "free some disk space" in problem


@pytest.fixture(scope="module")
def module_resource() -> str:
    """Stands for a module's shared server or browser: what conftest.py groups tests by."""
    return "shared"


def test_tests_sharing_a_module_fixture_stay_on_one_xdist_worker(
    request: pytest.FixtureRequest, module_resource: str
) -> None:
    """conftest.py marks them ``xdist_group``; ``--dist loadgroup`` (scripts/test.sh) sends a
    group to one worker by a suffix pytest-xdist adds to the node id. With pytest 9.2 the
    suffix is no longer part of the node id: the groups were split, and a module's Jupyter
    server, hub or browser session started on both workers. pyproject.toml keeps pytest
    below 9.2."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not a pytest-xdist worker run with --dist loadgroup")
    assert module_resource == "shared"
    assert request.node.nodeid.endswith("@test_testing_infra"), request.node.nodeid
