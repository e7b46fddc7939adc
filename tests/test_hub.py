"""Issue 14: bookstore under a real JupyterHub.

JupyterHub (PyPI) with configurable-http-proxy (npm, installed into the virtualenv by
scripts/setup-env.sh) runs with the ``jupyterhub_config.py`` of docs/jupyterhub.md, taken
from the page as it is: SimpleLocalProcessSpawner, DummyAuthenticator, users alice and bob.
Only ports, the data folder and the bucket come from the environment the config reads (and
the proxy's API port and the spawn timeouts on the command line). One hub per module.

alice and bob log in through the hub's login form, take an API token from the hub, and talk
to their own servers through the proxy: their saves land under their own workspace prefix,
bob clones what alice published but gets 403 for her draft, and both see alice's published
notebook in the gallery. One browser test logs in through the hub's login page in headless
Chromium, lands in JupyterLab on the user's server, types in a notebook and saves it with
Ctrl+S: the version lands under that user's workspace prefix.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import notebook, wait_until

from bookstore.testing import S3Server

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "jupyterhub.md"
pytestmark = pytest.mark.slow  # a hub, a proxy and two Jupyter servers, once per module

STARTUP = 240.0  # seconds: the hub, then each user's server, on a busy machine


def hub_config_from_docs() -> str:
    """The single-machine ``jupyterhub_config.py`` of docs/jupyterhub.md, verbatim."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    configs = [b for b in blocks if b.startswith("# jupyterhub_config.py")]
    assert len(configs) == 1, "docs/jupyterhub.md must hold one jupyterhub_config.py block"
    return configs[0]


def find_proxy() -> str:
    """configurable-http-proxy: in the virtualenv (setup-env.sh puts it there), or on PATH."""
    here = Path(sys.prefix) / "node_modules" / ".bin" / "configurable-http-proxy"
    if here.exists():
        return str(here)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = Path(folder) / "configurable-http-proxy"
        if found.exists():
            return str(found)
    raise AssertionError(
        "configurable-http-proxy (npm) is missing: run scripts/setup-env.sh, which installs "
        f"it into {Path(sys.prefix) / 'node_modules'}"
    )


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Hub:
    url: str
    bucket: str
    s3: Any
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class User:
    """A hub user logged in through the login form, with an API token for their server."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.session = requests.Session()
        login = self.session.get(f"{hub.url}/hub/login", timeout=30)
        login.raise_for_status()
        xsrf = self.session.cookies.get("_xsrf", path="/hub/") or self.session.cookies.get("_xsrf")
        r = self.session.post(
            f"{hub.url}/hub/login",
            data={"username": name, "password": "any", "_xsrf": xsrf or ""},
            timeout=60,
        )
        assert r.status_code == 200, r.text[:500]
        assert self.session.cookies.get("jupyterhub-session-id"), "login did not set a session"
        home = self.session.get(f"{hub.url}/hub/home", timeout=30)
        assert home.status_code == 200, home.text[:500]
        xsrf = [c.value for c in self.session.cookies if c.name == "_xsrf"][-1]
        r = self.session.post(
            f"{hub.url}/hub/api/users/{name}/tokens",
            json={"note": "bookstore hub test", "expires_in": 3600},
            headers={"X-XSRFToken": xsrf, "Referer": f"{hub.url}/hub/home"},
            timeout=30,
        )
        assert r.status_code == 201, r.text[:500]
        self.token = r.json()["token"]
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"token {self.token}"
        self.start_server()

    def start_server(self) -> None:
        """Ask the hub to start the user's server (if the login did not); do not wait."""
        r = self.api.post(f"{self.hub.url}/hub/api/users/{self.name}/server", timeout=30)
        assert r.status_code in (201, 202, 400), r.text[:500]  # 400: already running

    def wait_for_server(self) -> None:
        """Wait until the user's server answers."""
        deadline = time.monotonic() + STARTUP
        while True:
            r = self.api.get(self.url("api/bookstore"), timeout=30, allow_redirects=False)
            if r.status_code == 200:
                return
            if time.monotonic() > deadline or self.hub.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name}'s server never answered ({r.status_code}):\n"
                    + self.hub.log_tail()
                )
            time.sleep(0.5)

    def url(self, path: str) -> str:
        return f"{self.hub.url}/user/{self.name}/{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.api.request(method, self.url(path), timeout=60, **kwargs)


@pytest.fixture(scope="module")
def hub(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    proxy = find_proxy()
    data = tmp_path_factory.mktemp("hub")
    bucket = f"hub-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(bucket, versioning=True)
    config = data / "jupyterhub_config.py"
    config.write_text(hub_config_from_docs(), encoding="utf-8")
    port, api_port, proxy_api_port = free_ports(3)
    if os.geteuid() == 0:
        # Jupyter servers refuse to run as root (this test's container): each user's own
        # config (HOME is their home folder) allows it, the hub config stays the guide's.
        for name in ("alice", "bob"):
            user_config = data / "home" / name / ".jupyter"
            user_config.mkdir(parents=True)
            (user_config / "jupyter_server_config.json").write_text(
                json.dumps({"ServerApp": {"allow_root": True}}), encoding="utf-8"
            )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JPYNB_S3_", "JUPYTERHUB_", "JUPYTER_"))
    }
    env.update(
        {
            "PATH": os.pathsep.join(
                [str(Path(proxy).parent), str(Path(sys.executable).parent), env.get("PATH", "")]
            ),
            "PYTHONPATH": str(ROOT),
            "HUB_PORT": str(port),
            "HUB_API_PORT": str(api_port),
            "HUB_DATA_DIR": str(data),
            "JPYNB_S3_BUCKET": bucket,
            "JPYNB_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "JPYNB_S3_REGION_NAME": s3_server.region_name,
            "JPYNB_S3_ACCESS_KEY_ID": s3_server.access_key_id,
            "JPYNB_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        }
    )
    log = data / "hub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterhub",
                "-f",
                str(config),
                f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{proxy_api_port}",
                f"--ConfigurableHTTPProxy.command={proxy}",
                "--Spawner.start_timeout=200",
                "--Spawner.http_timeout=200",
            ],
            cwd=data,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(f"http://127.0.0.1:{port}", bucket, s3_server.boto3_client(), proc, log)
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                if requests.get(f"{hub.url}/hub/api", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("JupyterHub did not start:\n" + hub.log_tail())
            time.sleep(0.3)
        yield hub
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the hub stops the users' servers and the proxy
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in the hub's session
        except ProcessLookupError:
            pass
        proc.wait(10)
        hub.s3.close()


@pytest.fixture(scope="module")
def users(hub: Hub) -> dict[str, User]:
    """alice and bob, logged in, their servers started side by side and answering."""
    users = {name: User(hub, name) for name in ("alice", "bob")}
    for user in users.values():
        user.wait_for_server()
    return users


@pytest.fixture(scope="module")
def alice(users: dict[str, User]) -> User:
    return users["alice"]


@pytest.fixture(scope="module")
def bob(users: dict[str, User]) -> User:
    return users["bob"]


TYPED = "print('typed behind the hub, saved to S3')"
SCREENSHOT = Path(os.environ.get("BOOKSTORE_SCREENSHOT_HUB", "/tmp/bookstore-browser-hub.png"))


def nb_model(text: str) -> str:
    return json.dumps({"type": "notebook", "content": notebook(text)})


def wait_for_versions(hub: Hub, key: str, count: int) -> list[dict[str, Any]]:
    def versions() -> list[dict[str, Any]] | None:
        resp = hub.s3.list_object_versions(Bucket=hub.bucket, Prefix=key)
        found = [v for v in resp.get("Versions", []) if v["Key"] == key]
        return found if len(found) >= count else None

    return wait_until(versions, 60, f"{key} never had {count} version(s)", interval=0.2)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def saved(hub: Hub, alice: User, bob: User) -> None:
    """alice saves a draft and publishes a report; bob saves a notebook of his own."""
    for user, path, text in (
        (alice, "draft.ipynb", "alice's draft"),
        (bob, "mine.ipynb", "bob's notebook"),
    ):
        r = user.request("PUT", f"api/contents/{path}", data=nb_model(text))
        assert r.status_code in (200, 201), r.text[:500]
    r = alice.request("PUT", "api/bookstore/publish/report.ipynb", data=nb_model("alice's report"))
    assert r.status_code in (200, 201), r.text[:500]


def test_each_users_saves_land_under_their_own_prefix(hub: Hub, saved: None) -> None:
    (draft,) = wait_for_versions(hub, "workspace/alice/draft.ipynb", 1)
    (mine,) = wait_for_versions(hub, "workspace/bob/mine.ipynb", 1)
    keys = {
        v["Key"]
        for v in hub.s3.list_object_versions(Bucket=hub.bucket).get("Versions", [])
        if v["Key"].startswith("workspace/")
    }
    assert keys == {"workspace/alice/draft.ipynb", "workspace/bob/mine.ipynb"}
    meta = hub.s3.head_object(
        Bucket=hub.bucket, Key="workspace/alice/draft.ipynb", VersionId=draft["VersionId"]
    )["Metadata"]
    assert meta.get("user") == "alice"
    assert mine["IsLatest"]


def test_bob_clones_alices_published_notebook_but_not_her_draft(
    hub: Hub, saved: None, bob: User
) -> None:
    wait_for_versions(hub, "workspace/alice/draft.ipynb", 1)
    denied = bob.request(
        "POST", "api/bookstore/clone", data=json.dumps({"s3_key": "workspace/alice/draft.ipynb"})
    )
    assert denied.status_code == 403
    assert "readable_prefixes" in denied.json()["message"]
    assert bob.request("GET", "api/contents/draft.ipynb").status_code == 404  # nothing written

    cloned = bob.request(
        "POST", "api/bookstore/clone", data=json.dumps({"s3_key": "published/alice/report.ipynb"})
    )
    assert cloned.status_code in (200, 201), cloned.text[:500]
    got = bob.request("GET", "api/contents/report.ipynb").json()
    assert "alice's report" in json.dumps(got["content"])


def test_both_see_alices_published_notebook_in_the_gallery(
    hub: Hub, saved: None, alice: User, bob: User
) -> None:
    for user in (alice, bob):
        r = user.request("GET", "api/bookstore/published")
        assert r.status_code == 200, r.text[:500]
        entries = [(n["owner"], n["path"]) for n in r.json()["published"]]
        assert ("alice", "report.ipynb") in entries
        page = user.request("GET", "bookstore/published")
        assert page.status_code == 200
        assert "report.ipynb" in page.text

    # bob follows the links of alice's entry: her read-only history, the clone landing page,
    # and "Run this version" is offered for her published version.
    page = bob.request("GET", "bookstore/published", params={"owner": "alice"}).text
    entry = re.search(r'data-key="published/alice/report.ipynb">(.*?)</li>', page, re.S)
    assert entry is not None
    links = dict(
        (text, html.unescape(href))
        for href, text in re.findall(r'<a class="bs-action" href="([^"]+)">([^<]+)</a>', entry[1])
    )
    assert set(links) == {"Clone", "History"}
    assert 'name="key" value="published/alice/report.ipynb"' in entry[1]  # the Run form
    (published,) = wait_for_versions(hub, "published/alice/report.ipynb", 1)
    for text in ("Clone", "History"):
        followed = bob.api.get(hub.url + links[text], timeout=60)
        assert followed.status_code == 200, (text, followed.text[:500])
    history = bob.api.get(hub.url + links["History"], timeout=60).text
    assert published["VersionId"] in history
    assert "Restore" not in history


@pytest.mark.browser
def test_browser_logs_in_through_the_hub_and_saves_from_jupyterlab(
    hub: Hub, browser: Any, alice: User
) -> None:
    """The real UI end to end: the hub's login form, the spawn, JupyterLab, Ctrl+S, S3."""
    key = "workspace/alice/from-browser.ipynb"
    nb = notebook("")
    nb["cells"][0]["source"] = ""
    r = alice.request(
        "PUT",
        "api/contents/from-browser.ipynb",
        data=json.dumps({"type": "notebook", "content": nb}),
    )
    assert r.status_code in (200, 201), r.text[:500]
    (first,) = wait_for_versions(hub, key, 1)

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", "alice")
        page.fill("#password_input", "any")
        page.click("#login_submit")
        # The hub sends a logged-in user on to their server's default URL (/lab).
        page.wait_for_url(re.compile(r"/user/alice/lab"), timeout=STARTUP * 1000)
        page.goto(f"{hub.url}/user/alice/lab/tree/from-browser.ipynb")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content", state="visible")
        # The notebook names no kernel, so JupyterLab asks for one: "No Kernel".
        page.locator(".jp-Dialog button", has_text="No Kernel").click()
        page.locator(".jp-Dialog").wait_for(state="detached")
        page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first.click()
        page.keyboard.type(TYPED)
        page.keyboard.press("Control+s")
        versions = wait_for_versions(hub, key, 2)
    finally:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        context.close()

    newest = max(versions, key=lambda v: v["LastModified"])
    assert newest["VersionId"] != first["VersionId"]
    got = hub.s3.get_object(Bucket=hub.bucket, Key=key, VersionId=newest["VersionId"])
    assert got["Metadata"].get("user") == "alice"
    saved = json.loads(got["Body"].read())
    assert TYPED in "".join(saved["cells"][0]["source"])
    # Only under alice's own prefix: no other user's workspace holds it.
    elsewhere = hub.s3.list_object_versions(Bucket=hub.bucket, Prefix="workspace/")
    assert {
        v["Key"] for v in elsewhere.get("Versions", []) if v["Key"].endswith("from-browser.ipynb")
    } == {key}
    assert errors == [], errors
