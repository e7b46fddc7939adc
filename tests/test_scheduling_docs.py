"""docs/scheduling.md: each recipe's exact command line, run against the test S3 server."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from run_helpers import outputs_text, param_notebook, publish, run_versions

from bookstore.cli import main
from bookstore.testing import S3Server

DOC = Path(__file__).resolve().parent.parent / "docs" / "scheduling.md"
SHELL_OPERATORS = {">", ">>", "2>&1", "|", "&&", ";", "||", "&"}


def recipe(name: str) -> str:
    """The fenced block right after ``<!-- recipe: name -->``."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- recipe: {re.escape(name)} -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert m, f"docs/scheduling.md has no recipe {name!r}"
    return m.group(1)


def shell_argv(line: str) -> list[str]:
    """The ``bookstore ...`` words of a shell line, up to the first redirection or operator."""
    words = shlex.split(line)
    start = words.index("bookstore")
    out = []
    for word in words[start:]:
        if word in SHELL_OPERATORS or word.startswith(">"):
            break
        out.append(word)
    return out


def cron_argv() -> tuple[list[str], dict[str, str]]:
    env, argv = {}, None
    for line in recipe("cron").splitlines():
        if re.match(r"^[A-Z_][A-Z0-9_]*=", line):
            k, v = line.split("=", 1)
            env[k] = v
        elif line.strip():
            fields = line.split(None, 5)
            assert len(fields) == 6, f"not a crontab line: {line}"
            argv = shell_argv(fields[5])
    assert argv is not None
    return argv, env


def kubernetes_argv() -> tuple[list[str], dict[str, str]]:
    manifest = yaml.safe_load(recipe("kubernetes"))
    assert manifest["kind"] == "CronJob"
    pod = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "bookstore-s3"}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    return [*container["command"], *container["args"]], env


def airflow_argv() -> tuple[list[str], dict[str, str]]:
    tree = ast.parse(recipe("airflow"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    (bash,) = [c for c in calls if getattr(c.func, "id", None) == "BashOperator"]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in bash.keywords}
    command = kwargs["bash_command"].replace("{{ ds }}", "2024-05-01")  # as Airflow renders it
    return shell_argv(command), dict(kwargs["env"])


def scheduler_argv() -> tuple[list[str], dict[str, str]]:
    (line,) = [ln for ln in recipe("jupyter-scheduler").splitlines() if ln.startswith("!")]
    return shell_argv(line[1:]), {}


RECIPES = {
    "cron": cron_argv,
    "kubernetes": kubernetes_argv,
    "airflow": airflow_argv,
    "jupyter-scheduler": scheduler_argv,
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_command_runs_against_the_test_s3_server(
    name: str,
    s3_server: S3Server,
    s3_bucket: str,
    s3: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, recipe_env = RECIPES[name]()
    assert argv[:2] == ["bookstore", "run"]
    code = "print('report', region, run_date)"
    publish(
        s3, s3_bucket, "reports/daily.ipynb", param_notebook(code, "region = 'x'\nrun_date = ''")
    )
    # The recipe's own settings, with the test server in place of the real bucket.
    for k, v in recipe_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("JPYNB_S3_BUCKET", s3_bucket)
    monkeypatch.setenv("JPYNB_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("JPYNB_S3_REGION_NAME", s3_server.region_name)
    monkeypatch.setenv("JPYNB_S3_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("JPYNB_S3_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))

    exit_code = main(argv[1:])
    out, err = capsys.readouterr()

    assert exit_code == 0, err
    (run,) = run_versions(s3, s3_bucket, "reports/daily.ipynb")
    assert "report eu-west" in outputs_text(run["nb"])
    if name == "airflow":
        assert "2024-05-01" in outputs_text(run["nb"])
    if "--json" in argv:
        assert json.loads(out)["output_version_id"] == run["version_id"]
