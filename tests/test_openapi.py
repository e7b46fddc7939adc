"""The server's real responses checked against ``docs/openapi.yaml``.

Data-driven over the spec: every operation in it gets a test (parametrised by
``operationId``) that runs the *scenario* registered for that operation, a coroutine making
real requests to a real server backed by a real S3 server. Each response to a bookstore path
is matched to its path template and operation in the spec; its status must be documented
there, its content type must be one the spec lists, and a JSON body must validate against the
schema (OpenAPI 3.0 dialect, formats checked). An operation without a scenario fails, so the
spec and the tests move together.

To cover a new endpoint: describe it in ``docs/openapi.yaml``, then write
``@scenario("itsOperationId") async def ...(api: Api) -> None`` making its requests through
``api.call``. State is prepared directly (``api.put_object``, ``api.root_dir``...), unchecked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import nbformat
import pytest
import yaml
from helpers import notebook
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec
from tornado.escape import url_escape
from tornado.httpclient import HTTPResponse

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def load_spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)  # type: ignore[no-any-return]


SPEC = load_spec()


def operations(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """operationId -> (method, path template), for every operation of the spec."""
    ops = {}
    for template, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                ops[item[method]["operationId"]] = (method, template)
    return ops


def _template_regex(template: str) -> re.Pattern[str]:
    # A path parameter may hold slashes (notebook paths): match greedily, and let the
    # template with the most literal text win when several match.
    parts = re.split(r"(\{[^}]+\})", template)
    pattern = "".join(".+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{pattern}/?$")


def match_operation(spec: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The (template, operation) of the spec that ``method path`` is an instance of."""
    candidates = [
        t
        for t, item in spec["paths"].items()
        if method.lower() in item and _template_regex(t).match(path)
    ]
    assert candidates, f"{method} {path} matches no operation of {SPEC_PATH.name}"
    template = max(candidates, key=lambda t: len(re.sub(r"\{[^}]+\}", "", t)))
    return template, spec["paths"][template][method.lower()]


def _resolve(spec: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in obj:
        node: Any = spec
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def check_response(spec: dict[str, Any], method: str, path: str, resp: HTTPResponse) -> str:
    """Assert that ``resp`` is what the spec documents; return the operationId."""
    template, operation = match_operation(spec, method, path)
    where = f"{method} {path} ({operation['operationId']}, {template})"
    responses = operation["responses"]
    documented = responses.get(str(resp.code)) or responses.get("default")
    assert documented is not None, f"{where}: status {resp.code} is not documented"
    documented = _resolve(spec, documented)
    content = documented.get("content") or {}
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    if not content:
        assert not resp.body, f"{where}: {resp.code} has a body the spec does not describe"
        return str(operation["operationId"])
    assert ctype in content, f"{where}: {resp.code} answered {ctype!r}, spec lists {list(content)}"
    if ctype == "application/json":
        schema = content[ctype]["schema"]
        validator = OAS30Validator(
            {**schema, "components": spec["components"]}, format_checker=oas30_format_checker
        )
        error = best_match(validator.iter_errors(json.loads(resp.body)))
        assert error is None, f"{where}: {resp.code} body does not match the schema: {error}"
    return str(operation["operationId"])


# --- scenarios ------------------------------------------------------------------------------------


@dataclass
class Api:
    """What a scenario works with: the server (checked and unchecked), S3, the folders."""

    client: Any
    auth_header: dict[str, str]
    base_url: str
    spec: dict[str, Any]
    s3: Any
    bucket: str
    root_dir: Path
    shared_dir: Path
    serverapp: Any = None
    checked: list[tuple[str, int]] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        token: bool = True,
        raw_path: bool = False,
    ) -> HTTPResponse:
        """Send a request to a bookstore endpoint and check the response against the spec.

        ``path`` is relative to the base URL and URL-escaped here unless ``raw_path``.
        """
        path = path if raw_path else url_escape(path, plus=False)
        url = self.base_url + path + (f"?{urlencode(params)}" if params else "")
        data = body if body is None or isinstance(body, (str, bytes)) else json.dumps(body)
        resp = await self.client.fetch(
            url,
            method=method,
            body=data,
            headers=dict(self.auth_header) if token else {},
            raise_error=False,
            allow_nonstandard_methods=True,
            follow_redirects=False,  # check the server's own answer (303 of a form POST)
        )
        self.checked.append((check_response(self.spec, method, "/" + path, resp), resp.code))
        return resp  # type: ignore[no-any-return]

    @property
    def runs(self) -> Any:
        """The server's run manager (to stop the runs a scenario started)."""
        return self.serverapp.web_app.settings["bookstore_runs"]

    def put_object(self, key: str, body: bytes) -> str:
        return str(self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"])


Scenario = Callable[[Api], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(operation_id: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[operation_id] = fn
        return fn

    return register


def nb_bytes(nb: dict[str, Any]) -> bytes:
    return (nbformat.writes(nbformat.from_dict(nb), version=nbformat.NO_CONVERT) + "\n").encode()


@scenario("getStatus")
async def _status(api: Api) -> None:
    assert (await api.call("GET", "api/bookstore")).code == 200
    assert (await api.call("GET", "api/bookstore", token=False)).code == 403


@scenario("publishNotebook")
async def _publish(api: Api) -> None:
    ok = await api.call(
        "PUT", "api/bookstore/publish/dir/nb.ipynb", {"type": "notebook", "content": notebook()}
    )
    assert ok.code == 200
    bad = notebook()
    del bad["cells"][0]["source"]
    statuses = [
        (
            await api.call(
                "PUT",
                "api/bookstore/publish/a%5Cb.ipynb",
                {"type": "notebook", "content": notebook()},
                raw_path=True,
            )
        ).code,
        (
            await api.call("PUT", "api/bookstore/publish/x.ipynb", {"type": "file", "content": "x"})
        ).code,
        (
            await api.call(
                "PUT", "api/bookstore/publish/x.ipynb", {"type": "notebook", "content": bad}
            )
        ).code,
        (
            await api.call(
                "PUT",
                "api/bookstore/publish/x.ipynb",
                {"type": "notebook", "content": notebook()},
                token=False,
            )
        ).code,
    ]
    assert statuses == [400, 415, 422, 403]


@scenario("cloneLandingPage")
async def _clone_page(api: Api) -> None:
    ok = await api.call("GET", "bookstore/clone", params={"s3_key": "workspace/a.ipynb"})
    assert ok.code == 200
    missing = await api.call("GET", "bookstore/clone", params={"s3_key": ""})
    forbidden = await api.call(
        "GET", "bookstore/clone", params={"s3_key": "a.ipynb", "s3_bucket": "not-allowed-here"}
    )
    unreadable = await api.call("GET", "bookstore/clone", params={"s3_key": "elsewhere/a.ipynb"})
    assert (missing.code, forbidden.code, unreadable.code) == (400, 403, 403)


@scenario("listPublished")
async def _published(api: Api) -> None:
    version = api.put_object("published/g/a.ipynb", nb_bytes(notebook()))
    ok = await api.call("GET", "api/bookstore/published", params={"limit": "10"})
    assert ok.code == 200
    (entry,) = json.loads(ok.body)["published"]
    assert (entry["owner"], entry["path"], entry["version_id"]) == (None, "g/a.ipynb", version)
    statuses = [
        (await api.call("GET", "api/bookstore/published", params={"limit": "0"})).code,
        # The default published_prefix has no {username}: there is no owner to filter on.
        (await api.call("GET", "api/bookstore/published", params={"owner": "alice"})).code,
        (await api.call("GET", "api/bookstore/published", token=False)).code,
    ]
    assert statuses == [400, 400, 403]


@scenario("publishedPage")
async def _published_page(api: Api) -> None:
    api.put_object("published/g/b.ipynb", nb_bytes(notebook()))
    ok = await api.call("GET", "bookstore/published", params={"q": "b.ipynb"})
    assert ok.code == 200
    assert b"g/b.ipynb" in ok.body
    assert (await api.call("GET", "bookstore/published", params={"limit": "x"})).code == 400


@scenario("cloneFromS3")
async def _clone(api: Api) -> None:
    version = api.put_object("published/c.ipynb", nb_bytes(notebook()))
    api.put_object("published/broken.ipynb", b"not a notebook")
    ok = await api.call(
        "POST", "api/bookstore/clone", {"s3_key": "published/c.ipynb", "s3_version_id": version}
    )
    assert ok.code == 200
    assert json.loads(ok.body)["versionID"] == version
    text = await api.call(
        "POST", "api/bookstore/clone", {"s3_key": "published/c.ipynb", "target_path": "c.txt"}
    )
    assert json.loads(text.body)["type"] == "file"
    statuses = [
        (await api.call("POST", "api/bookstore/clone", {"s3_key": "published/none.ipynb"})).code,
        (
            await api.call(
                "POST",
                "api/bookstore/clone",
                {"s3_key": "c.ipynb", "s3_bucket": "not-allowed-here"},
            )
        ).code,
        (await api.call("POST", "api/bookstore/clone", {"s3_key": ""})).code,
        (await api.call("POST", "api/bookstore/clone", {"s3_key": "published/broken.ipynb"})).code,
        (
            await api.call(
                "POST",
                "api/bookstore/clone",
                {"s3_key": "published/c.ipynb", "target_path": "nowhere/c.ipynb"},
            )
        ).code,
    ]
    assert statuses == [404, 403, 400, 422, 404]


@scenario("fsCloneLandingPage")
async def _fs_clone_page(api: Api) -> None:
    ok = await api.call("GET", "bookstore/fs-clone", params={"relpath": "shared.ipynb"})
    missing = await api.call("GET", "bookstore/fs-clone", params={"relpath": "none.ipynb"})
    bad = await api.call("GET", "bookstore/fs-clone", params={"relpath": "../x"})
    assert (ok.code, missing.code, bad.code) == (200, 404, 400)


@scenario("cloneFromFilesystem")
async def _fs_clone(api: Api) -> None:
    ok = await api.call("POST", "api/bookstore/fs-clone", {"relpath": "shared.ipynb"})
    again = await api.call("POST", "api/bookstore/fs-clone", {"relpath": "shared.ipynb"})
    assert (ok.code, json.loads(again.body)["path"]) == (200, "shared-1.ipynb")
    missing = await api.call("POST", "api/bookstore/fs-clone", {"relpath": "none.ipynb"})
    bad = await api.call("POST", "api/bookstore/fs-clone", {"relpath": "/etc/passwd"})
    assert (missing.code, bad.code) == (404, 400)


@scenario("publishedHistoryPage")
async def _published_history(api: Api) -> None:
    version = api.put_object("published/g/h.ipynb", nb_bytes(notebook()))
    ok = await api.call("GET", "bookstore/published/history", params={"key": "published/g/h.ipynb"})
    assert ok.code == 200
    assert version.encode() in ok.body
    statuses = [
        (await api.call("GET", "bookstore/published/history")).code,
        (await api.call("GET", "bookstore/published/history", params={"key": "x/y.ipynb"})).code,
    ]
    assert statuses == [400, 400]


@scenario("publishedVersionPage")
async def _published_view(api: Api) -> None:
    version = api.put_object("published/g/v.ipynb", nb_bytes(notebook("seen here")))
    key = "published/g/v.ipynb"
    ok = await api.call(
        "GET", "bookstore/published/view", params={"key": key, "version_id": version}
    )
    assert ok.code == 200
    assert b"seen here" in ok.body
    missing = await api.call("GET", "bookstore/published/view", params={"key": key})
    assert missing.code == 400


@scenario("publishedRun")
async def _published_run(api: Api) -> None:
    vid = api.put_object("published/r/gallery.ipynb", _run_notebook())
    try:
        form = {"key": "published/r/gallery.ipynb", "version_id": vid}
        ok = await api.call("POST", "bookstore/published/run", urlencode(form))
        assert ok.code == 303
        statuses = [
            (await api.call("POST", "bookstore/published/run", urlencode({}))).code,
            (
                await api.call(
                    "POST",
                    "bookstore/published/run",
                    urlencode({**form, "key": "published/r/a.txt"}),
                )
            ).code,
        ]
        assert statuses == [400, 415]
    finally:
        await api.runs.stop(timeout=60)


# --- tests ----------------------------------------------------------------------------------------


def test_the_spec_is_valid_openapi() -> None:
    validate_spec(load_spec())


def test_operation_ids_are_unique() -> None:
    ids = [item[m]["operationId"] for item in SPEC["paths"].values() for m in METHODS if m in item]
    assert len(ids) == len(set(ids))


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "shared.ipynb").write_bytes(nb_bytes(notebook("shared")))
    return shared


@pytest.fixture
def bookstore_config(bookstore_config: dict[str, Any], shared_dir: Path) -> dict[str, Any]:
    return {**bookstore_config, "fs_cloning_basedir": str(shared_dir)}


@pytest.fixture
def api(
    jp_serverapp: Any,
    http_server_client: Any,
    jp_auth_header: dict[str, str],
    jp_base_url: str,
    s3: Any,
    s3_bucket: str,
    jp_root_dir: Path,
    shared_dir: Path,
) -> Api:
    return Api(
        http_server_client,
        jp_auth_header,
        jp_base_url,
        SPEC,
        s3,
        s3_bucket,
        jp_root_dir,
        shared_dir,
        jp_serverapp,
    )


@pytest.mark.parametrize("operation_id", sorted(operations(SPEC)))
async def test_responses_match_the_spec(api: Api, operation_id: str) -> None:
    run = SCENARIOS.get(operation_id)
    if run is None:
        method, template = operations(SPEC)[operation_id]
        pytest.fail(
            f"no scenario exercises {operation_id} ({method.upper()} {template}): add one to "
            f"{Path(__file__).name} with @scenario({operation_id!r})"
        )
    await run(api)
    exercised = {op for op, _ in api.checked}
    assert operation_id in exercised, f"the scenario never called {operation_id}"


def test_every_scenario_belongs_to_an_operation() -> None:
    """Each scenario is registered for an operation that exists in the spec."""
    unknown = set(SCENARIOS) - set(operations(SPEC))
    assert not unknown, f"scenarios for operations missing from the spec: {sorted(unknown)}"


# --- version history (issue 4) ----------------------------------------------------------------


def _history_versions(api: Api, path: str, sources: list[str]) -> list[str]:
    """Store versions of ``path`` under the workspace prefix, oldest first; their ids."""
    return [api.put_object(f"workspace/{path}", nb_bytes(notebook(s))) for s in sources]


@scenario("getVersions")
async def _versions(api: Api) -> None:
    ids = _history_versions(api, "h/nb.ipynb", ["one", "two", "three"])
    first = await api.call("GET", "api/bookstore/versions/h/nb.ipynb", params={"limit": "2"})
    token = json.loads(first.body)["next_token"]
    rest = await api.call(
        "GET", "api/bookstore/versions/h/nb.ipynb", params={"limit": "2", "page_token": token}
    )
    one = await api.call("GET", "api/bookstore/versions/h/nb.ipynb", params={"version_id": ids[0]})
    assert (first.code, rest.code, one.code) == (200, 200, 200)
    assert len(json.loads(rest.body)["versions"]) == 1
    assert json.loads(first.body)["dropped"] == []  # none set aside: test_versions_dropped
    assert json.loads(one.body)["type"] == "notebook"
    statuses = [
        (await api.call("GET", "api/bookstore/versions/h/none.ipynb")).code,
        (
            await api.call(
                "GET", "api/bookstore/versions/h/nb.ipynb", params={"version_id": "bad id"}
            )
        ).code,
        (
            await api.call(
                "GET",
                "api/bookstore/versions/h/nb.ipynb",
                params={"version_id": "0123456789abcdef0123456789abcdef"},
            )
        ).code,
        (await api.call("GET", "api/bookstore/versions/h/nb.ipynb", params={"prefix": "x"})).code,
        (await api.call("GET", "api/bookstore/versions/h/nb.ipynb", token=False)).code,
    ]
    assert statuses == [404, 400, 404, 400, 403]


@scenario("restoreVersion")
async def _restore(api: Api) -> None:
    (api.root_dir / "h").mkdir(exist_ok=True)
    ids = _history_versions(api, "h/r.ipynb", ["good", "bad"])
    ok = await api.call("POST", "api/bookstore/versions/h/r.ipynb", {"version_id": ids[0]})
    assert ok.code == 200
    statuses = [
        (await api.call("POST", "api/bookstore/versions/h/r.ipynb", {"version_id": "a b"})).code,
        (await api.call("POST", "api/bookstore/versions/h/r.ipynb", "[]")).code,
        (
            await api.call(
                "POST",
                "api/bookstore/versions/h/r.ipynb",
                {"version_id": "0123456789abcdef0123456789abcdef"},
            )
        ).code,
        (
            await api.call(
                "POST", "api/bookstore/versions/h/r.ipynb", {"version_id": ids[0]}, token=False
            )
        ).code,
    ]
    assert statuses == [400, 400, 404, 403]


@scenario("diffVersions")
async def _diff(api: Api) -> None:
    a, b = _history_versions(api, "h/d.ipynb", ["before", "after"])
    ok = await api.call("GET", "api/bookstore/diff/h/d.ipynb", params={"from": a, "to": b})
    assert ok.code == 200
    api.put_object("workspace/h/d.txt", b"text")
    statuses = [
        (await api.call("GET", "api/bookstore/diff/h/d.ipynb")).code,
        (
            await api.call(
                "GET",
                "api/bookstore/diff/h/d.ipynb",
                params={"from": "0123456789abcdef0123456789abcdef", "to": b},
            )
        ).code,
        (await api.call("GET", "api/bookstore/diff/h/d.txt", params={"from": a})).code,
        (await api.call("GET", "api/bookstore/diff/h/gone.ipynb", params={"from": a})).code,
    ]
    assert statuses == [400, 404, 415, 404]


@scenario("historyPage")
async def _history_page(api: Api) -> None:
    ids = _history_versions(api, "h/p.ipynb", ["one", "two"])
    timeline = await api.call("GET", "bookstore/versions/h/p.ipynb")
    view = await api.call("GET", "bookstore/versions/h/p.ipynb", params={"version_id": ids[0]})
    assert (timeline.code, view.code) == (200, 200)
    statuses = [
        (await api.call("GET", "bookstore/versions/h/none.ipynb")).code,
        (await api.call("GET", "bookstore/versions/h/p.ipynb", params={"version_id": "<x>"})).code,
    ]
    assert statuses == [404, 400]


@scenario("historyPageRestore")
async def _history_restore(api: Api) -> None:
    (api.root_dir / "h").mkdir(exist_ok=True)
    ids = _history_versions(api, "h/f.ipynb", ["good", "bad"])
    ok = await api.call("POST", "bookstore/versions/h/f.ipynb", urlencode({"version_id": ids[0]}))
    assert ok.code == 303
    statuses = [
        (
            await api.call("POST", "bookstore/versions/h/f.ipynb", urlencode({"version_id": "a b"}))
        ).code,
        (
            await api.call(
                "POST",
                "bookstore/versions/h/f.ipynb",
                urlencode({"version_id": "0123456789abcdef0123456789abcdef"}),
            )
        ).code,
        (
            await api.call(
                "POST",
                "bookstore/versions/h/f.ipynb",
                urlencode({"version_id": ids[0]}),
                token=False,
            )
        ).code,
    ]
    assert statuses == [400, 404, 403]


@scenario("historyDiffPage")
async def _history_diff_page(api: Api) -> None:
    a, b = _history_versions(api, "h/g.ipynb", ["before", "after"])
    ok = await api.call("GET", "bookstore/diff/h/g.ipynb", params={"from": a, "to": b})
    assert ok.code == 200
    statuses = [
        (await api.call("GET", "bookstore/diff/h/g.ipynb")).code,
        (
            await api.call(
                "GET",
                "bookstore/diff/h/g.ipynb",
                params={"from": "0123456789abcdef0123456789abcdef", "to": b},
            )
        ).code,
        (await api.call("GET", "bookstore/diff/h/g.txt", params={"from": a})).code,
    ]
    assert statuses == [400, 404, 415]


# --- runs (issue 9) ---------------------------------------------------------------------------


def _run_notebook() -> bytes:
    from run_helpers import param_notebook

    return param_notebook("print(x)")


def _archived_run(api: Api, path: str) -> str:
    """A run output as `bookstore run` stores it (prepared directly: no kernel needed)."""
    from bookstore.runs import run_metadata

    body = _run_notebook()
    record = {
        "run_id": "20240101T000000Z-0123abcd",
        "status": "succeeded",
        "path": path,
        "source": {"bucket": api.bucket, "key": f"published/{path}", "prefix": "published"},
        "parameters": {"x": 2},
        "kernel": "python3",
        "started": "2024-01-01T00:00:00.000Z",
        "finished": "2024-01-01T00:00:02.000Z",
        "duration": 2.0,
        "user": "alice",
        "host": "worker-1",
    }
    meta = run_metadata(record, "0" * 64)
    put = api.s3.put_object(Bucket=api.bucket, Key=f"runs/{path}", Body=body, Metadata=meta)
    return str(put["VersionId"])


@scenario("getRuns")
async def _runs(api: Api) -> None:
    vid = _archived_run(api, "r/nb.ipynb")
    listing = await api.call("GET", "api/bookstore/runs/r/nb.ipynb")
    one = await api.call("GET", "api/bookstore/runs/r/nb.ipynb", params={"version_id": vid})
    assert (listing.code, one.code) == (200, 200)
    assert json.loads(listing.body)["runs"][0]["parameters"] == {"x": 2}
    statuses = [
        (await api.call("GET", "api/bookstore/runs/r/nb.ipynb", params={"limit": "0"})).code,
        (await api.call("GET", "api/bookstore/runs/r/nb.txt")).code,
        (
            await api.call(
                "GET",
                "api/bookstore/runs/r/nb.ipynb",
                params={"version_id": "0123456789abcdef0123456789abcdef"},
            )
        ).code,
    ]
    assert statuses == [400, 415, 404]


@scenario("startRun")
async def _start_run(api: Api) -> None:
    vid = api.put_object("published/r/run.ipynb", _run_notebook())
    try:
        ok = await api.call(
            "POST", "api/bookstore/runs/r/run.ipynb", {"version_id": vid, "parameters": {"x": 3}}
        )
        assert ok.code == 202
        statuses = [
            (await api.call("POST", "api/bookstore/runs/r/run.ipynb", "[]")).code,
            (await api.call("POST", "api/bookstore/runs/r/none.ipynb", {})).code,
            (await api.call("POST", "api/bookstore/runs/r/run.txt", {})).code,
        ]
        assert statuses == [400, 404, 415]
    finally:
        await api.runs.stop(timeout=60)


@scenario("historyPageRun")
async def _history_run(api: Api) -> None:
    vid = api.put_object("published/r/page.ipynb", _run_notebook())
    try:
        ok = await api.call("POST", "bookstore/runs/r/page.ipynb", urlencode({"version_id": vid}))
        assert ok.code == 303
        statuses = [
            (await api.call("POST", "bookstore/runs/r/page.ipynb", urlencode({}))).code,
            (
                await api.call(
                    "POST",
                    "bookstore/runs/r/page.ipynb",
                    urlencode({"version_id": "0123456789abcdef0123456789abcdef"}),
                )
            ).code,
        ]
        assert statuses == [400, 404]
    finally:
        await api.runs.stop(timeout=60)
