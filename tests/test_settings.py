"""BookstoreSettings: help, defaults, environment variables, validation, ``{username}``.

The last tests start a real server configured through the environment only, and check that
what the environment says reaches the S3 client: the saves land in the bucket.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from helpers import list_versions, notebook
from traitlets import TraitError
from traitlets.config import Config

from bookstore.s3 import S3Store
from bookstore.settings import (
    ENV_ACCESS_KEY_ID,
    ENV_BUCKET,
    ENV_ENDPOINT_URL,
    ENV_REGION_NAME,
    ENV_SECRET_ACCESS_KEY,
    ENV_SPOOL_DIR,
    BookstoreSettings,
)
from bookstore.testing import S3Server

ALL_ENV = (
    ENV_ACCESS_KEY_ID,
    ENV_SECRET_ACCESS_KEY,
    ENV_ENDPOINT_URL,
    ENV_REGION_NAME,
    ENV_BUCKET,
    ENV_SPOOL_DIR,
)


@pytest.fixture(autouse=True)
def _no_bookstore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*ALL_ENV, "JUPYTERHUB_USER"):
        monkeypatch.delenv(name, raising=False)


# --- help and defaults -------------------------------------------------------------------


def test_every_config_trait_has_help() -> None:
    traits = BookstoreSettings.class_traits(config=True)
    assert len(traits) >= 9
    missing = [name for name, t in traits.items() if len((t.help or "").strip()) < 20]
    assert missing == [], f"traits without a useful help text: {missing}"


@pytest.mark.parametrize(
    ("trait", "env"),
    [
        ("s3_access_key_id", ENV_ACCESS_KEY_ID),
        ("s3_secret_access_key", ENV_SECRET_ACCESS_KEY),
        ("s3_endpoint_url", ENV_ENDPOINT_URL),
        ("s3_region_name", ENV_REGION_NAME),
        ("s3_bucket", ENV_BUCKET),
        ("spool_dir", ENV_SPOOL_DIR),
    ],
)
def test_help_names_the_environment_variable(trait: str, env: str) -> None:
    assert env in BookstoreSettings.class_traits()[trait].help


def test_defaults_match_the_original() -> None:
    s = BookstoreSettings()
    assert s.workspace_prefix == "workspace"
    assert s.published_prefix == "published"
    assert s.workspace == "workspace"
    assert s.published == "published"
    assert s.s3_bucket == ""
    assert s.s3_endpoint_url == ""
    assert s.s3_region_name == "us-east-1"
    assert s.s3_access_key_id is None
    assert s.s3_secret_access_key is None
    assert s.enable_s3_cloning is True
    assert s.fs_cloning_basedir == "/Users/jupyter"
    assert s.archive_patterns == ["*.ipynb"]


def test_original_style_prefixes_are_normalised() -> None:
    """The original README configured '/workspace/kylek/notebooks' (leading slash)."""
    s = BookstoreSettings(
        workspace_prefix="/workspace/kylek/notebooks",
        published_prefix="published//kylek/notebooks/",
    )
    assert s.workspace == "workspace/kylek/notebooks"
    assert s.published == "published/kylek/notebooks"
    assert s.s3_key("workspace", "a/b.ipynb") == "workspace/kylek/notebooks/a/b.ipynb"


def test_config_object_sets_traits() -> None:
    config = Config({"BookstoreSettings": {"s3_bucket": "my-notebooks", "workspace_prefix": "ws"}})
    s = BookstoreSettings(config=config)
    assert s.s3_bucket == "my-notebooks"
    assert s.s3_key("workspace", "x.ipynb") == "ws/x.ipynb"


# --- environment variables ---------------------------------------------------------------


def test_environment_variables_feed_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv(ENV_ACCESS_KEY_ID, "AKIAEXAMPLE")
    monkeypatch.setenv(ENV_SECRET_ACCESS_KEY, "secret-from-env")
    monkeypatch.setenv(ENV_ENDPOINT_URL, "http://127.0.0.1:9000/")
    monkeypatch.setenv(ENV_REGION_NAME, "eu-west-3")
    monkeypatch.setenv(ENV_BUCKET, "env-bucket")
    monkeypatch.setenv(ENV_SPOOL_DIR, str(tmp_path / "spool"))
    s = BookstoreSettings()
    assert s.s3_access_key_id == "AKIAEXAMPLE"
    assert s.s3_secret_access_key == "secret-from-env"
    assert s.s3_endpoint_url == "http://127.0.0.1:9000"  # normalised like a configured value
    assert s.s3_region_name == "eu-west-3"
    assert s.s3_bucket == "env-bucket"
    assert s.spool_dir == str(tmp_path / "spool")


def test_config_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BUCKET, "env-bucket")
    monkeypatch.setenv(ENV_REGION_NAME, "eu-west-3")
    s = BookstoreSettings(s3_bucket="config-bucket", s3_region_name="us-west-2")
    assert s.s3_bucket == "config-bucket"
    assert s.s3_region_name == "us-west-2"


async def test_environment_reaches_the_s3_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ENDPOINT_URL, "http://127.0.0.1:9")
    monkeypatch.setenv(ENV_REGION_NAME, "eu-west-3")
    monkeypatch.setenv(ENV_ACCESS_KEY_ID, "AKIAEXAMPLE")
    monkeypatch.setenv(ENV_SECRET_ACCESS_KEY, "secret-from-env")
    store = S3Store(BookstoreSettings())
    try:
        client = await store.client()
        assert client.meta.region_name == "eu-west-3"
        assert client.meta.endpoint_url == "http://127.0.0.1:9"
        creds = await client._get_credentials().get_frozen_credentials()
        assert creds.access_key == "AKIAEXAMPLE"
        assert creds.secret_key == "secret-from-env"
    finally:
        await store.close()


async def test_unset_credentials_use_botocores_default_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMAWSENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-aws-env")
    settings = BookstoreSettings(s3_endpoint_url="http://127.0.0.1:9")
    assert settings.s3_access_key_id is None
    store = S3Store(settings)
    try:
        client = await store.client()
        creds = await client._get_credentials().get_frozen_credentials()
        assert creds.access_key == "AKIAFROMAWSENV"
        assert creds.secret_key == "secret-from-aws-env"
    finally:
        await store.close()


def test_empty_environment_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY, ENV_REGION_NAME, ENV_BUCKET):
        monkeypatch.setenv(name, "")
    s = BookstoreSettings()
    assert s.s3_access_key_id is None
    assert s.s3_secret_access_key is None
    assert s.s3_region_name == "us-east-1"
    assert s.s3_bucket == ""


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"s3_bucket": "My_Bucket"}, "lowercase letters"),
        ({"s3_bucket": "ab"}, "3-63 characters"),
        ({"s3_bucket": "192.168.1.1"}, "IP address"),
        ({"s3_bucket": "a..b"}, "'..'"),
        ({"s3_endpoint_url": "localhost:9000"}, "http:// or https://"),
        ({"s3_endpoint_url": "ftp://example.com"}, "http:// or https://"),
        ({"s3_endpoint_url": "http://"}, "http:// or https://"),
        ({"workspace_prefix": "a/../b"}, "'..'"),
        ({"workspace_prefix": "./a"}, "'.'"),
        ({"published_prefix": "a\\b"}, "'/' as separator"),
        ({"workspace_prefix": "/"}, "must not be empty"),
        ({"workspace_prefix": "users/{user}"}, "only placeholder allowed is {username}"),
        ({"workspace_prefix": "users/{0}"}, "only placeholder allowed is {username}"),
        ({"workspace_prefix": "users/{}"}, "only placeholder allowed is {username}"),
        ({"workspace_prefix": "users/{username"}, "only placeholder allowed is {username}"),
        ({"workspace_prefix": "users/{username.upper}"}, "only placeholder allowed"),
        ({"workspace_prefix": "users/{username!r}"}, "only placeholder allowed"),
        ({"workspace_prefix": "users/{username:>9}"}, "only placeholder allowed"),
        ({"fs_cloning_basedir": "relative/dir"}, "absolute path"),
        ({"spool_dir": ""}, "must not be empty"),
        ({"max_concurrent_uploads": 0}, ">= 1"),
        ({"upload_retry_initial_delay": 0}, "positive number of seconds"),
        ({"flush_timeout": -1}, "positive number of seconds"),
        ({"upload_quiet_period": -0.01}, "from 0 to 60 seconds"),
        ({"upload_quiet_max_wait": 120}, "from 0 to 60 seconds"),
        ({"max_request_body_size": 10}, ">= 1024"),
        ({"max_checkpoints": 0}, "from 1 to 1000"),
        ({"max_checkpoints": 5000}, "from 1 to 1000"),
        ({"clone_allowed_buckets": ["Bad_Name"]}, "Bad_Name"),
    ],
)
def test_bad_values_raise_a_useful_trait_error(kwargs: dict[str, Any], message: str) -> None:
    ((name, value),) = kwargs.items()
    with pytest.raises(TraitError) as info:
        BookstoreSettings(**kwargs)
    text = str(info.value)
    assert message in text
    # The message names the setting, so the user knows which line of config to fix.
    assert name in text or repr(value) in text or str(value) in text


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        (ENV_BUCKET, "Not_A_Bucket", "lowercase letters"),
        (ENV_ENDPOINT_URL, "s3.example.com", "http:// or https://"),
    ],
)
def test_bad_environment_values_raise_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    s = BookstoreSettings()
    trait = "s3_bucket" if env == ENV_BUCKET else "s3_endpoint_url"
    with pytest.raises(TraitError) as info:
        getattr(s, trait)
    assert message in str(info.value)
    assert env in str(info.value)


def test_bucket_name_is_stripped() -> None:
    assert BookstoreSettings(s3_bucket="  my-notebooks ").s3_bucket == "my-notebooks"


# --- {username} ----------------------------------------------------------------------------


def test_username_placeholder_expands_to_jupyterhub_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    s = BookstoreSettings(
        workspace_prefix="workspace/{username}", published_prefix="published/{username}/nb"
    )
    assert s.workspace_prefix == "workspace/{username}"  # kept unexpanded in the config
    assert s.workspace == "workspace/alice"
    assert s.published == "published/alice/nb"
    assert s.s3_key("workspace", "dir/a.ipynb") == "workspace/alice/dir/a.ipynb"
    assert s.username == "alice"


def test_username_placeholder_follows_the_user_at_use_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = BookstoreSettings(workspace_prefix="ws/{username}")
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    assert s.workspace == "ws/bob"


def test_username_with_slash_cannot_change_key_structure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "evil/../x")
    s = BookstoreSettings(workspace_prefix="ws/{username}")
    assert s.workspace.count("/") == 1
    assert s.workspace.startswith("ws/")


def test_username_without_jupyterhub_is_the_os_user() -> None:
    s = BookstoreSettings(workspace_prefix="ws/{username}")
    assert s.workspace == f"ws/{s.username}"
    assert s.username  # never empty


# --- spool directory -----------------------------------------------------------------------


def test_spool_dir_defaults_under_jupyter_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    s = BookstoreSettings()
    assert s.spool_dir == os.path.join(str(tmp_path / "jupyter-data"), "bookstore", "spool")


def test_spool_dir_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert BookstoreSettings(spool_dir="rel/spool").spool_dir == str(tmp_path / "rel" / "spool")


# --- a real server configured only through the environment ---------------------------------


def _env_for(s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BUCKET, bucket)
    monkeypatch.setenv(ENV_ENDPOINT_URL, s3_server.endpoint_url)
    monkeypatch.setenv(ENV_REGION_NAME, s3_server.region_name)


class TestServerConfiguredByEnvironment:
    """No c.BookstoreSettings at all: bucket, endpoint, region and keys from JPYNB_S3_*."""

    @pytest.fixture
    def jp_server_config(
        self, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> dict[str, Any]:
        _env_for(s3_server, s3_bucket, monkeypatch)
        monkeypatch.setenv(ENV_ACCESS_KEY_ID, s3_server.access_key_id)
        monkeypatch.setenv(ENV_SECRET_ACCESS_KEY, s3_server.secret_access_key)
        return {
            "ServerApp": {
                "jpserver_extensions": {"bookstore": True},
                "contents_manager_class": "bookstore.BookstoreContentsArchiver",
            }
        }

    async def test_saves_are_archived(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        settings = bookstore_ext.bookstore_settings
        assert settings.s3_bucket == s3_bucket
        # The spool sits under the (test's) Jupyter data directory by default.
        assert settings.spool_dir.startswith(os.environ["JUPYTER_DATA_DIR"])
        r = await jp_fetch(
            "api",
            "contents",
            "env.ipynb",
            method="PUT",
            body=json.dumps({"type": "notebook", "content": notebook("from env")}),
        )
        assert r.code == 201  # created
        assert await bookstore_ext.archiver.wait_idle(20)
        versions = list_versions(s3, s3_bucket, "workspace/env.ipynb")
        assert len(versions) == 1
        status = json.loads((await jp_fetch("api", "bookstore")).body)
        assert status["archive"]["versioning_enabled"] is True
        assert status["archive"]["problems"] == []


class TestServerWithAwsCredentialChain:
    """No JPYNB_S3_* keys: the AWS_* variables (botocore's default chain) authenticate."""

    @pytest.fixture
    def jp_server_config(
        self, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> dict[str, Any]:
        _env_for(s3_server, s3_bucket, monkeypatch)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
        return {
            "ServerApp": {
                "jpserver_extensions": {"bookstore": True},
                "contents_manager_class": "bookstore.BookstoreContentsArchiver",
            }
        }

    async def test_saves_are_archived(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        assert bookstore_ext.bookstore_settings.s3_access_key_id is None
        r = await jp_fetch(
            "api",
            "contents",
            "chain.ipynb",
            method="PUT",
            body=json.dumps({"type": "notebook", "content": notebook("aws chain")}),
        )
        assert r.code == 201  # created
        assert await bookstore_ext.archiver.wait_idle(20)
        assert len(list_versions(s3, s3_bucket, "workspace/chain.ipynb")) == 1


class TestServerWithoutCredentials:
    """Neither JPYNB_S3_* nor AWS_* keys: the status says so and names what to set."""

    @pytest.fixture
    def jp_server_config(
        self, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> dict[str, Any]:
        _env_for(s3_server, s3_bucket, monkeypatch)
        return {
            "ServerApp": {
                "jpserver_extensions": {"bookstore": True},
                "contents_manager_class": "bookstore.BookstoreContentsArchiver",
            }
        }

    async def test_status_reports_missing_credentials(
        self, jp_fetch: Any, bookstore_ext: Any
    ) -> None:
        status = json.loads((await jp_fetch("api", "bookstore")).body)
        problems = " ".join(status["archive"]["problems"])
        assert "no usable S3 credentials" in problems
        assert "s3_access_key_id" in problems
