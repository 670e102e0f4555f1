"""The Dockerfile, checked without a Docker engine: it runs as a non-root user, every command it documents
exists in the CLI under its entrypoint, every AFS_* variable it sets is a real setting, every file it
copies exists, and the build stage's sources alone build a wheel holding the whole service."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from afs.cli import main
from afs.config import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def only(stage: list[tuple[str, str]], name: str) -> str:
    found = [args for instruction, args in stage if instruction == name]
    assert len(found) == 1, f"expected one {name} in the final stage, found {found}"
    return found[0]


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), "use the exec form, so signals reach afs (the worker stops cleanly on SIGTERM)"
    return parsed


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            env |= dict(item.split("=", 1) for item in shlex.split(args))
    return env


def documented_commands() -> list[list[str]]:
    """The `docker run IMAGE ...` lines of the Dockerfile's header comment."""
    return [shlex.split(m.group(1).split("  ")[0]) for m in re.finditer(r"docker run IMAGE ([a-z][^\n]*)",
                                                                         DOCKERFILE.read_text())]


def test_it_runs_as_a_numeric_non_root_user_created_in_the_image() -> None:
    stage = final_stage()
    user = only(stage, "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert any(name == "RUN" and re.search(rf"useradd\b.*--uid {user}\b", args) for name, args in stage)
    after_user = stage[[name for name, _ in stage].index("USER"):]
    assert not any(name == "RUN" for name, _ in after_user), "nothing should run as root after USER"


def test_the_entrypoint_and_every_documented_command_exist_in_the_cli() -> None:
    stage = final_stage()
    entrypoint, default = exec_form(only(stage, "ENTRYPOINT")), exec_form(only(stage, "CMD"))
    scripts = re.search(r"\[project\.scripts\]\s*\n(.*?)\n\s*\n", (REPO / "pyproject.toml").read_text(), re.S)
    assert scripts and f'{entrypoint[0]} = "afs.cli:main"' in scripts.group(1)
    commands = documented_commands()
    assert default in commands and ["api"] in commands and ["ppdb", "serve"] in commands
    for command in commands:
        result = CliRunner().invoke(main, [*entrypoint[1:], *command, "--help"])
        assert result.exit_code == 0, f"{command}: {result.output}"


def test_every_afs_variable_it_sets_is_a_setting_and_its_ports_are_exposed() -> None:
    stage = final_stage()
    env = {k: v for k, v in env_of(stage).items() if k.startswith("AFS_")}
    fields = {f"AFS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, f"not settings: {set(env) - fields}"
    settings = Settings(**{k.removeprefix("AFS_").lower(): v for k, v in env.items()})
    assert settings.worker_metrics_host == settings.api_host == "0.0.0.0"
    exposed = {int(port) for port in only(stage, "EXPOSE").split()}
    assert {settings.api_port, settings.worker_metrics_port} <= exposed
    assert all(str(getattr(settings, name)).startswith("/var/lib/afs/") for name in
               ("archive_dir", "jobs_dir", "ppdb_path")) and "/var/lib/afs" in only(stage, "VOLUME")


def test_every_copied_path_exists() -> None:
    for name, args in instructions():
        if name == "COPY" and not args.startswith("--from"):
            for source in shlex.split(args)[:-1]:
                assert (REPO / source).exists(), source


@pytest.mark.slow
def test_the_build_stage_sources_alone_build_a_wheel_with_the_whole_service(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    build = instructions()[:[name for name, _ in instructions()].index("FROM", 1)]
    for name, args in build:
        if name == "COPY":
            for source in shlex.split(args)[:-1]:
                copy = shutil.copytree if (REPO / source).is_dir() else shutil.copy
                copy(REPO / source, context / source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                    str(context)], check=True, timeout=300)
    wheel = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl")))
    names = set(wheel.namelist())
    sources = {str(p.relative_to(REPO)) for package in ("afs", "sandbox") for p in (REPO / package).rglob("*.py")}
    sources |= {str(p.relative_to(REPO)) for p in (REPO / "afs" / "web" / "static").iterdir()}  # the web page
    assert sources <= names, f"missing from the image: {sorted(sources - names)[:5]}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "afs = afs.cli:main" in wheel.read(entry_points).decode()
