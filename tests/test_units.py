"""The unit layer: pure logic with no server (codecs, validators, metadata, times,
clone names, cell_changes, the settings' validators)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

import nbformat
import pytest
from helpers import notebook
from traitlets import TraitError

from bookstore.codecs import (
    checkpoint_id_for_save,
    checkpoint_id_for_version,
    decode_page_token,
    encode_page_token,
    parse_checkpoint_id,
    save_time,
    split_store_token,
    store_token,
)
from bookstore.diff import diff_notebooks
from bookstore.errors import BadRequest
from bookstore.metadata import (
    NOTEBOOK_CONTENT_TYPE,
    OCTET_STREAM,
    content_type_for,
    object_metadata,
)
from bookstore.render import cell_changes
from bookstore.services import free_name
from bookstore.settings import BookstoreSettings
from bookstore.times import human_time, isoformat, parse_time
from bookstore.validators import optional_version_id, validate_limit, validate_prefix

# --- page tokens -------------------------------------------------------------------------------


def test_a_page_token_round_trips_and_is_url_safe() -> None:
    raw = store_token("workspace/a b/ü.ipynb", "v1+/=")

    token = encode_page_token(raw)

    assert token is not None
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_page_token(token, "workspace/a b/ü.ipynb") == raw
    assert split_store_token(raw) == ("workspace/a b/ü.ipynb", "v1+/=")


def test_no_token_is_the_first_page() -> None:
    assert encode_page_token(None) is None
    assert decode_page_token(None, "k") is None
    assert decode_page_token("", "k") is None


@pytest.mark.parametrize("token", ["!!!", "%%", encode_page_token("other/key\nv1") or ""])
def test_a_foreign_or_broken_token_is_a_bad_request(token: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_page_token(token, "workspace/nb.ipynb")
    assert "next_token" in str(info.value)


def test_a_token_can_be_checked_by_a_predicate_with_its_own_hint() -> None:
    token = encode_page_token("published/alice/x.ipynb")

    assert decode_page_token(token, accept=lambda k: k.startswith("published/")) == (
        "published/alice/x.ipynb"
    )
    with pytest.raises(BadRequest, match="start again"):
        decode_page_token(token, accept=lambda k: k.startswith("runs/"), hint="start again")


# --- checkpoint ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version_id",
    ["3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "a.b_c/d=e", "null", "0f1e2d3c" * 4, "x-y-z"],
)
def test_checkpoint_ids_round_trip_and_match_jupyters_pattern(version_id: str) -> None:
    checkpoint_id = checkpoint_id_for_version(version_id)

    assert checkpoint_id.startswith("v-")
    assert all(c.isalnum() or c in "-_" for c in checkpoint_id)
    assert parse_checkpoint_id(checkpoint_id) == ("version", version_id)


def test_a_pending_save_has_its_own_checkpoint_id_and_time() -> None:
    save_id = f"{1_700_000_000_000_000_000:020d}-0a1b2c"

    assert parse_checkpoint_id(checkpoint_id_for_save(save_id)) == ("save", save_id)
    assert save_time(save_id) == datetime.fromtimestamp(1_700_000_000, timezone.utc)
    assert save_time("not-a-save-id") is None


@pytest.mark.parametrize("bad", ["", "v-", "p-123", "x-abc", "v-_zz", "v-a b", "v-_e2_82"])
def test_other_checkpoint_ids_are_bad_requests_saying_where_to_find_good_ones(bad: str) -> None:
    with pytest.raises(BadRequest, match="list the checkpoints"):
        parse_checkpoint_id(bad)


# --- validators -------------------------------------------------------------------------------


def test_validators_accept_clean_values_and_refuse_others_saying_what_to_give() -> None:
    assert validate_prefix(None) == "workspace"
    assert validate_prefix("runs") == "runs"
    with pytest.raises(BadRequest, match="'workspace' or 'published'"):
        validate_prefix("runs", ("workspace", "published"))
    assert validate_limit(None) == 1000
    assert validate_limit("7") == 7
    assert validate_limit(None, 50, 500) == 50
    with pytest.raises(BadRequest, match="from 1 to 500"):
        validate_limit("501", 50, 500)
    with pytest.raises(BadRequest, match="an integer"):
        validate_limit("ten")
    assert optional_version_id("") is None
    with pytest.raises(BadRequest, match=r"s3_version_id 'a b'.*%2B"):
        optional_version_id("a b", "s3_version_id")


# --- metadata and times -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "model_type", "mimetype", "expected"),
    [
        ("a/nb.ipynb", None, None, NOTEBOOK_CONTENT_TYPE),
        ("a/nb.ipynb", "notebook", "text/plain", NOTEBOOK_CONTENT_TYPE),
        ("data.csv", None, None, "text/csv"),
        ("data.csv", "file", "text/x-custom", "text/x-custom"),
        ("blob.unknownext", None, None, OCTET_STREAM),
        ("Makefile", None, None, OCTET_STREAM),
    ],
)
def test_content_type_for(
    path: str, model_type: str | None, mimetype: str | None, expected: str
) -> None:
    assert content_type_for(path, model_type, mimetype) == expected


def test_object_metadata_names_who_when_where_and_the_hash() -> None:
    meta = object_metadata(
        sha256="ab", saved_at="2024-01-01T00:00:00.000Z", user="alice", path="nb.ipynb"
    )
    assert meta == {
        "sha256": "ab",
        "saved-at": "2024-01-01T00:00:00.000Z",
        "user": "alice",
        "jupyter-path": "nb.ipynb",
    }
    with_save = object_metadata(
        sha256="ab", saved_at="t", user="u", path="p", save_id="s", extra={"restored-from": "v"}
    )
    assert with_save["save-id"] == "s"
    assert with_save["restored-from"] == "v"


def test_times_are_utc_with_a_z_and_read_back() -> None:
    when = datetime(2024, 5, 1, 14, 3, 22, 123456, tzinfo=timezone.utc)

    assert isoformat(when) == "2024-05-01T14:03:22.123Z"
    assert isoformat(when.replace(tzinfo=None)) == "2024-05-01T14:03:22.123Z"
    assert parse_time("2024-05-01T14:03:22.123Z") == when.replace(microsecond=123000)
    assert parse_time("yesterday") is None
    assert human_time(when) == "2024-05-01 14:03:22"
    assert human_time("2024-05-01T16:03:22+02:00", " UTC") == "2024-05-01 14:03:22 UTC"
    assert human_time(None, empty="—") == "—"


def test_clone_names_follow_jupyters_copies() -> None:
    assert free_name("q3.ipynb", 0) == "q3.ipynb"
    assert free_name("q3.ipynb", 2) == "q3-2.ipynb"
    assert free_name("v1.2.ipynb", 1) == "v1.2-1.ipynb"
    assert free_name("data.tar.gz", 1) == "data-1.tar.gz"
    assert free_name("README", 1) == "README-1"


# --- cell_changes ---------------------------------------------------------------------------


def _nb(*sources: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s, id=f"c{i}") for i, s in enumerate(sources)]
    return nbformat.from_dict(nb)


def _changes(before: Any, after: Any) -> list[tuple[str, int | None, int | None]]:
    diff = diff_notebooks(before, after)
    return [(c.status, c.old_index, c.new_index) for c in cell_changes(before, after, diff)]


def test_cell_changes_walk_each_cell_once_in_order() -> None:
    before = _nb("a = 1", "b = 2", "c = 3")
    after = _nb("a = 1", "b = 20", "c = 3", "d = 4")

    changes = _changes(before, after)

    assert changes == [
        ("unchanged", 0, 0),
        ("modified", 1, 1),
        ("unchanged", 2, 2),
        ("added", None, 3),
    ]


def test_cell_changes_show_removed_cells_and_their_lines() -> None:
    before = _nb("keep", "drop me")
    after = _nb("keep")

    diff = diff_notebooks(before, after)
    changes = cell_changes(before, after, diff)

    assert [(c.status, c.old_index) for c in changes] == [("unchanged", 0), ("removed", 1)]
    assert ("-", "drop me") in changes[1].lines


def test_cell_changes_of_identical_notebooks_are_all_unchanged() -> None:
    nb = nbformat.from_dict(notebook("x", n_cells=3))

    changes = cell_changes(nb, nb, diff_notebooks(nb, nb))

    assert [c.status for c in changes] == ["unchanged"] * 3


# --- the settings' validators ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"readable_prefixes": ["workspace/**"]}, "single '*'"),
        ({"readable_prefixes": ["a/../b"]}, "'..'"),
        ({"retention": {"keep_last": "many"}}, "retention:"),
        ({"max_concurrent_runs": 0}, ">= 1"),
        ({"max_spool_bytes": -1}, ">= 0"),
        ({"min_free_disk_bytes": -5}, ">= 0"),
        ({"s3_storage_class": "standard ia"}, "STANDARD_IA"),
        ({"published_cache_seconds": -1}, ">= 0"),
        ({"max_read_bytes": 0}, ">= 1"),
        ({"max_diff_cells": 0}, ">= 1"),
        ({"s3_read_timeout": 0}, "positive number of seconds"),
    ],
)
def test_more_bad_settings_raise_naming_the_setting(kwargs: dict[str, Any], message: str) -> None:
    ((name, _value),) = kwargs.items()
    with pytest.raises(TraitError) as info:
        BookstoreSettings(**kwargs)
    assert message in str(info.value)
    assert name in str(info.value)


def test_settings_are_normalised() -> None:
    s = BookstoreSettings(
        s3_endpoint_url=" http://127.0.0.1:9000/ ",
        s3_bucket=" my-bucket ",
        fs_cloning_basedir="/srv//shared/./notebooks/",
        spool_dir="~/spool",
        s3_storage_class=" STANDARD_IA ",
        readable_prefixes=["/published/", "workspace/{username}"],
        max_concurrent_runs=3,
    )

    assert s.s3_endpoint_url == "http://127.0.0.1:9000"
    assert s.s3_bucket == "my-bucket"
    assert s.fs_cloning_basedir == "/srv/shared/notebooks"
    assert s.spool_dir == os.path.join(os.path.expanduser("~"), "spool")
    assert s.s3_storage_class == "STANDARD_IA"
    assert s.readable_prefixes == ["published", "workspace/{username}"]
    assert s.max_concurrent_runs == 3


def test_the_jupyter_user_is_hubs_then_getpass_and_the_account_is_looked_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import getpass
    import pwd

    from bookstore import settings as settings_module

    for name in ("JUPYTERHUB_USER", "LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    lookups: list[int] = []
    real = pwd.getpwuid
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: lookups.append(uid) or real(uid))
    settings_module._account_name.cache_clear()
    try:
        names = {settings_module.jupyter_username() for _ in range(3)}
        assert lookups == [os.getuid()]  # one lookup for three saves
        assert names == {getpass.getuser()}
        monkeypatch.setenv("USER", "dora")
        assert settings_module.jupyter_username() == "dora" == getpass.getuser()
        monkeypatch.setenv("JUPYTERHUB_USER", "alice")
        assert settings_module.jupyter_username() == "alice"
    finally:
        settings_module._account_name.cache_clear()
