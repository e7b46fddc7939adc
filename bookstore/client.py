"""Publish and clone notebooks from inside a running notebook, through bookstore's REST API.

::

    from bookstore.client import BookstoreClient

    client = BookstoreClient()      # finds this kernel's Jupyter server, its token, its notebook
    client.publish()                # publishes the current notebook, as last saved
    client.publish("reports/q3.ipynb")
    client.clone("published/reports/q3.ipynb", version_id="...", target_path="q3-old.ipynb")

Inside a kernel, the server is found from the kernel's connection file (its name holds the
kernel id) and jupyter_server's list of running servers (the ``jpserver-*.json`` files of
the Jupyter runtime directory): the server whose ``/api/sessions`` lists this kernel is
ours, and that session names the notebook. Outside a kernel, pass ``url`` and ``token``
(or run exactly one server). Servers under a base URL (JupyterHub) work: the URL in the
server's info file includes it.

HTTP goes through :mod:`urllib.request` only, every request with a timeout. Errors are
raised as one of these, all part of bookstore's one error tree (:mod:`bookstore.errors`):
``BookstoreError`` is :class:`bookstore.errors.BookstoreError`, and each HTTP error is also
the bookstore error of its status (``BookstoreNotFound`` is a
:class:`bookstore.errors.NotFound`, ``BookstoreS3Error`` a :class:`bookstore.errors.S3Error`,
and so on), with ``status`` the server's answer::

    BookstoreError
    ├── BookstoreDiscoveryError          no server, token or notebook found for this kernel
    ├── BookstoreConnectionError         the server could not be reached
    │   └── BookstoreTimeout             ... or did not answer within ``timeout`` seconds
    └── BookstoreHTTPError               the server answered with an error (.status, .message)
        ├── BookstoreBadRequest          400  bad path, key, version id or body
        ├── BookstoreForbidden           403  no or wrong token, bucket not allowed, XSRF
        ├── BookstoreNotFound            404  no such notebook, key or version; feature off
        ├── BookstoreConflict            409  the target is a folder
        ├── BookstorePayloadTooLarge     413  over max_request_body_size
        ├── BookstoreInvalidNotebook     415, 422  not a notebook, or an invalid one
        └── BookstoreS3Error             502, 503  S3 refused the server, or is unreachable
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    BadRequest,
    BookstoreError,
    Conflict,
    Forbidden,
    InvalidNotebook,
    NotFound,
    S3Error,
    TooLarge,
)

__all__ = [
    "BookstoreBadRequest",
    "BookstoreClient",
    "BookstoreConflict",
    "BookstoreConnectionError",
    "BookstoreDiscoveryError",
    "BookstoreError",
    "BookstoreForbidden",
    "BookstoreHTTPError",
    "BookstoreInvalidNotebook",
    "BookstoreNotFound",
    "BookstorePayloadTooLarge",
    "BookstoreS3Error",
    "BookstoreTimeout",
    "CloneResult",
    "PublishResult",
]

#: Environment variables holding a token the server accepts, tried when its info file has none.
TOKEN_ENV_VARS = ("JUPYTERHUB_API_TOKEN", "JUPYTER_TOKEN")

_KERNEL_FILE_RE = re.compile(r"^kernel-(?P<id>.+)\.json$")
_SERVER_FILE_RE = re.compile(r"^jpserver-\d+\.json$")


# --- exceptions ---------------------------------------------------------------------------------


class BookstoreDiscoveryError(BookstoreError):
    """The client could not find its server, token or notebook; pass them explicitly."""


class BookstoreConnectionError(BookstoreError):
    """The Jupyter server could not be reached."""


class BookstoreTimeout(BookstoreConnectionError):
    """The Jupyter server did not answer in time."""


class BookstoreHTTPError(BookstoreError):
    """The server answered with an error ``status``; ``message`` is the server's explanation.

    Each subclass is also the :mod:`bookstore.errors` class of its status (the server
    raised that error): ``except bookstore.errors.NotFound`` catches a client's 404 too.
    """

    def __init__(self, status: int, message: str, *, url: str = "") -> None:
        BookstoreError.__init__(
            self, f"{status}: {message}" + (f" ({url})" if url else ""), status=status
        )
        self._message = message
        self.url = url

    @property
    def message(self) -> str:
        return self._message


class BookstoreBadRequest(BookstoreHTTPError, BadRequest):
    """400: a path, key, version id or body the server cannot use."""


class BookstoreForbidden(BookstoreHTTPError, Forbidden):
    """403: no or wrong token, missing permission, or a bucket the server may not read."""


class BookstoreNotFound(BookstoreHTTPError, NotFound):
    """404: no such notebook, S3 key or version (or the feature is not enabled)."""


class BookstoreConflict(BookstoreHTTPError, Conflict):
    """409: the target conflicts with what exists (a folder of that name)."""


class BookstorePayloadTooLarge(BookstoreHTTPError, TooLarge):
    """413: the notebook is over the server's max_request_body_size."""


class BookstoreInvalidNotebook(BookstoreHTTPError, InvalidNotebook):
    """415 or 422: not a notebook, or not a valid one (the message says where)."""


class BookstoreS3Error(BookstoreHTTPError, S3Error):
    """502 or 503: S3 refused the server's request, or could not be reached."""

    code = None


_ERRORS_BY_STATUS: dict[int, type[BookstoreHTTPError]] = {
    400: BookstoreBadRequest,
    403: BookstoreForbidden,
    404: BookstoreNotFound,
    409: BookstoreConflict,
    413: BookstorePayloadTooLarge,
    415: BookstoreInvalidNotebook,
    422: BookstoreInvalidNotebook,
    502: BookstoreS3Error,
    503: BookstoreS3Error,
}


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    """Where a publish put the notebook: ``s3_path`` and the new S3 ``version_id``."""

    path: str
    s3_path: str
    version_id: str | None
    bucket: str
    key: str
    sha256: str


@dataclass(frozen=True)
class CloneResult:
    """The file a clone created (``path``, which may be a free name) and where it came from."""

    path: str
    name: str
    type: str
    s3_path: str | None
    version_id: str | None
    model: dict[str, Any] = field(repr=False, compare=False)


# --- discovery ----------------------------------------------------------------------------------


def current_kernel_id() -> str | None:
    """The id of the kernel this code runs in, from its connection file; None outside one."""
    try:
        from ipykernel.connect import get_connection_file

        connection_file = get_connection_file()
    except Exception:  # not in a kernel: ImportError, RuntimeError, or another app's singleton
        return None
    match = _KERNEL_FILE_RE.match(os.path.basename(connection_file))
    return match.group("id") if match else None


def running_servers() -> list[dict[str, Any]]:
    """Info of the Jupyter servers running on this machine (their ``jpserver-*.json`` files)."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        pass
    else:
        return list(list_running_servers())
    # A kernel environment without jupyter_server: read the runtime directory ourselves.
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    except ImportError:
        runtime_dir = os.environ.get("JUPYTER_RUNTIME_DIR", "")
    servers = []
    if runtime_dir and os.path.isdir(runtime_dir):
        for name in sorted(os.listdir(runtime_dir)):
            if not _SERVER_FILE_RE.match(name):
                continue
            try:
                with open(os.path.join(runtime_dir, name), encoding="utf-8") as f:
                    info = json.load(f)
                os.kill(int(info["pid"]), 0)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            servers.append(info)
    return servers


def _env_token() -> str:
    for name in TOKEN_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return ""


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class _SameOriginCredentialsRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but sends the token only back to the server it was meant for.

    urllib copies every header of a request into the redirected one, ``Authorization``
    included, whatever host the ``Location`` names; a server (or anything in the path)
    that answers with a redirect to another host, port or scheme would receive the token.
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for name in ("Authorization", "Cookie", "X-XSRFToken", "Proxy-Authorization"):
                new.remove_header(name.capitalize())  # urllib's spelling of header names
        return new


# --- the client ---------------------------------------------------------------------------------


class BookstoreClient:
    """Talks to the bookstore API of one Jupyter server.

    ``url`` is the server's base URL including any base path
    (``http://127.0.0.1:8888/user/alice/``); ``token`` its API token. Both default to what
    discovery finds for the current kernel (see the module docstring). ``timeout`` (seconds)
    applies to every request.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds (got {timeout})")
        self.timeout = timeout
        self._url = url.rstrip("/") + "/" if url else None
        self._token = token
        self._session: dict[str, Any] | None = None
        self._discovered = False

    def __repr__(self) -> str:
        return f"<BookstoreClient {self._url or '(server not discovered yet)'}>"

    # --- discovery -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL (ends with '/')."""
        self._discover()
        assert self._url is not None
        return self._url

    @property
    def token(self) -> str:
        self._discover()
        return self._token or ""

    @property
    def notebook_path(self) -> str:
        """The Jupyter path of the notebook this kernel belongs to (its current name)."""
        self._discover()
        if self._session is None:
            raise BookstoreDiscoveryError(
                "this code does not run in a notebook kernel of a Jupyter server that could be "
                "found, so there is no current notebook: pass the notebook's path explicitly"
            )
        path = self._session.get("path") or (self._session.get("notebook") or {}).get("path")
        return str(path)

    def _discover(self) -> None:
        if self._discovered:
            return
        kernel_id = current_kernel_id()
        if self._url is not None:
            found_servers = [{"url": self._url, "token": self._token}]
        else:
            found_servers = [
                {"url": info["url"], "token": self._token or info.get("token")}
                for info in running_servers()
                if str(info.get("url", "")).startswith(("http://", "https://"))
            ]
        candidates = [
            {
                "url": str(server["url"]).rstrip("/") + "/",
                "token": str(server["token"] or _env_token()),
            }
            for server in found_servers
        ]

        problems: list[str] = []
        if kernel_id is not None:
            for candidate in candidates:
                try:
                    sessions = self._call(
                        "GET", candidate["url"], "api/sessions", candidate["token"]
                    )
                except BookstoreError as e:
                    problems.append(f"{candidate['url']}: {e}")
                    continue
                for session in sessions or []:
                    if (session.get("kernel") or {}).get("id") == kernel_id:
                        self._use(candidate, session)
                        return
        if self._url is not None or len(candidates) == 1:
            # Not in a kernel (or a kernel the server does not list): use the one server.
            self._use(candidates[0], None)
            return
        where = f"kernel {kernel_id}" if kernel_id else "this process (not a kernel)"
        found = ", ".join(c["url"] for c in candidates) or "none"
        details = f"; {'; '.join(problems)}" if problems else ""
        raise BookstoreDiscoveryError(
            f"could not find the Jupyter server of {where} (running servers: {found}{details}); "
            f"pass BookstoreClient(url=..., token=...)"
        )

    def _use(self, candidate: dict[str, str], session: dict[str, Any] | None) -> None:
        self._url = candidate["url"]
        self._token = candidate["token"]
        self._session = session
        self._discovered = True

    # --- HTTP ----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        base_url: str,
        path: str,
        token: str | None,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        url = base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"token {token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        # Never send a local server's token through an HTTP proxy from the environment.
        handlers: list[urllib.request.BaseHandler] = [_SameOriginCredentialsRedirectHandler()]
        if _is_loopback(url):
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise self._http_error(e, method, url) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise BookstoreTimeout(f"{method} {url}: no answer within {self.timeout}s") from e
            raise BookstoreConnectionError(f"{method} {url}: {e.reason}") from e
        except (socket.timeout, TimeoutError) as e:
            raise BookstoreTimeout(f"{method} {url}: no answer within {self.timeout}s") from e
        except (OSError, http.client.HTTPException) as e:
            raise BookstoreConnectionError(f"{method} {url}: {e}") from e
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise BookstoreConnectionError(
                f"{method} {url}: the answer is not JSON; is this a Jupyter server? ({e})"
            ) from e

    @staticmethod
    def _http_error(e: urllib.error.HTTPError, method: str, url: str) -> BookstoreHTTPError:
        try:
            raw = e.read()
        except OSError:
            raw = b""
        finally:
            e.close()
        message = e.reason if isinstance(e.reason, str) else str(e)
        try:
            payload = json.loads(raw)
            if isinstance(payload, dict) and payload.get("message"):
                message = str(payload["message"])
        except ValueError:
            pass
        cls = _ERRORS_BY_STATUS.get(e.code, BookstoreHTTPError)
        return cls(e.code, message, url=f"{method} {url}")

    def _request(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        return self._call(method, self.url, path, self.token, body, query)

    # --- API -------------------------------------------------------------------------------

    def publish(self, path: str | None = None) -> PublishResult:
        """Publish notebook ``path`` (default: the current notebook) as last saved on disk.

        Save the notebook first: the server publishes what the contents API returns.
        """
        path = (path or self.notebook_path).strip("/")
        quoted = urllib.parse.quote(path)
        model = self._request(
            "GET", f"api/contents/{quoted}", query={"type": "notebook", "content": "1"}
        )
        result = self._request(
            "PUT",
            f"api/bookstore/publish/{quoted}",
            {"type": "notebook", "content": model["content"]},
        )
        return PublishResult(
            path=path,
            s3_path=result["s3_path"],
            version_id=result.get("versionID"),
            bucket=result["bucket"],
            key=result["key"],
            sha256=result["sha256"],
        )

    def clone(
        self,
        s3_key: str,
        s3_bucket: str | None = None,
        version_id: str | None = None,
        target_path: str | None = None,
        overwrite: bool = False,
    ) -> CloneResult:
        """Clone ``s3_key`` (a ``version_id`` of it, if given) into the Jupyter root.

        ``s3_bucket`` defaults to the server's bucket; ``target_path`` to the key's file
        name. An existing file is kept, and a free name chosen, unless ``overwrite``.
        """
        body: dict[str, Any] = {"s3_key": s3_key}
        if s3_bucket:
            body["s3_bucket"] = s3_bucket
        if version_id:
            body["s3_version_id"] = version_id
        if target_path:
            body["target_path"] = target_path
        if overwrite:
            body["overwrite"] = True
        model = self._request("POST", "api/bookstore/clone", body)
        return CloneResult(
            path=model["path"],
            name=model["name"],
            type=model["type"],
            s3_path=model.get("s3_path"),
            version_id=model.get("versionID"),
            model=model,
        )
