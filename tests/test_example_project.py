"""The example project refuses the public development key outside DEBUG (issue 5,
item 18), and ``check --deploy`` says when it is in use.

The settings module reads the environment at import time, so each case imports it
in a fresh interpreter with its own environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from oauth2_integrator.checks import PUBLIC_KEYS

REPO = Path(__file__).resolve().parent.parent
SETTINGS_FILE = REPO / "example_project" / "settings.py"
OWN_KEY = Fernet.generate_key().decode()
PRINT_KEYS = (
    "import example_project.settings as s; "
    "print(','.join(s.OAUTH2_INTEGRATOR['ENCRYPTION_KEYS']))"
)


def dev_key() -> str:
    match = re.search(r'DEV_ONLY_ENCRYPTION_KEY = "([^"]+)"', SETTINGS_FILE.read_text())
    assert match
    return match.group(1)


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DEBUG", "OAUTH2_INTEGRATOR_ENCRYPTION_KEYS", "SECRET_KEY"}
        and not key.startswith("DJANGO_")
    }
    environ.update(
        PYTHONPATH=str(REPO),
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'example.sqlite3'}",
        **env,
    )
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_development_key_is_known_to_the_app_as_public() -> None:
    assert dev_key() in PUBLIC_KEYS


@pytest.mark.parametrize("keys", [None, "", "DEV"])
def test_debug_off_refuses_to_start_without_a_real_key(
    tmp_path: Path, keys: str | None
) -> None:
    env = {"DEBUG": "False"}
    if keys is not None:
        env["OAUTH2_INTEGRATOR_ENCRYPTION_KEYS"] = (
            f"{OWN_KEY},{dev_key()}" if keys == "DEV" else keys
        )
    result = run(tmp_path, "-c", PRINT_KEYS, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "OAUTH2_INTEGRATOR_ENCRYPTION_KEYS" in result.stderr
    assert "Fernet.generate_key()" in result.stderr
    if keys == "DEV":
        assert "public development key" in result.stderr
        assert OWN_KEY not in result.stderr
    else:
        assert "is not set" in result.stderr


def test_debug_off_starts_with_a_real_key(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "-c",
        PRINT_KEYS,
        DEBUG="False",
        OAUTH2_INTEGRATOR_ENCRYPTION_KEYS=OWN_KEY,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == OWN_KEY


def test_debug_on_falls_back_to_the_development_key(tmp_path: Path) -> None:
    result = run(tmp_path, "-c", PRINT_KEYS)  # DEBUG defaults to True
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == dev_key()


def test_check_deploy_says_the_key_is_public(tmp_path: Path) -> None:
    manage = str(REPO / "manage.py")
    result = run(tmp_path, manage, "check", "--deploy")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "oauth2_integrator.E003" in output
    assert "public development key" in output

    result = run(
        tmp_path,
        manage,
        "check",
        "--deploy",
        DEBUG="False",
        OAUTH2_INTEGRATOR_ENCRYPTION_KEYS=OWN_KEY,
    )
    output = result.stdout + result.stderr
    assert "oauth2_integrator.E" not in output
    assert result.returncode == 0, output
