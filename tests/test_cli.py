"""The `warnd` command as an operator uses it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from warnd.cli import main

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@pytest.mark.parametrize("args", [[], ["serve"], ["db"], ["db", "upgrade"], ["directory"], ["directory", "import"],
                                  ["token"], ["token", "create"], ["cap"], ["cap", "validate"]])
def test_every_command_has_help(args):
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("name", ["twilio", "webhook-sink"])
def test_simulators_have_help(name):
    out = subprocess.run([sys.executable, "-m", "warnd", "sim", name, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--port" in out.stdout


def test_the_installed_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "warnd", "--help"], capture_output=True, text=True, check=True)
    assert "serve" in out.stdout and "预警" in out.stdout


def test_cap_validate_exit_code_and_problems(corpus):
    runner = CliRunner()
    good = runner.invoke(main, ["cap", "validate", str(corpus / "valid" / "google-thunderstorm.xml")])
    assert good.exit_code == 0 and "valid" in good.output
    bad = runner.invoke(main, ["cap", "validate", str(corpus / "valid" / "google-thunderstorm.xml"),
                               str(corpus / "invalid" / "google-noaa-bad-enumerations-cap11.xml")])
    assert bad.exit_code == 1
    assert "cap.schema" in bad.output and "/alert/info/urgency" in bad.output
    edge = runner.invoke(main, ["cap", "validate", str(corpus / "edge" / "nws-wind-advisory-cap11-empty-polygon.xml")])
    assert edge.exit_code == 0 and "warning" in edge.output.lower()


def test_fresh_database_token_and_idempotent_directory_import(tmp_path):
    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]
    cfg = tmp_path / "warnd.yaml"
    cfg.write_text("webhook:\n  allow_private_urls: true\n")
    assert runner.invoke(main, ["db", "upgrade", *db]).exit_code == 0
    files = [str(CONFIG_DIR / "directory.example.yaml"), str(CONFIG_DIR / "people.example.csv")]
    first = runner.invoke(main, ["directory", "import", "--config", str(cfg), *db, *files])
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, ["directory", "import", "--config", str(cfg), *db, *files])
    assert again.exit_code == 0 and "inserted: 0" in again.output and "updated: 0" in again.output
    token = runner.invoke(main, ["token", "create", *db, "--department", "县水利局", "--events", "山洪,洪水",
                                 "--regions", "421126", "--max-level", "orange", "--sender", "slj@421126.cn"])
    assert token.exit_code == 0 and token.output.startswith("wdt_")
    bad_level = runner.invoke(main, ["token", "create", *db, "--department", "x", "--max-level", "purple",
                                     "--sender", "x@example.cn"])
    assert bad_level.exit_code != 0 and "purple" in bad_level.output


def test_private_webhook_urls_are_refused_unless_configured(tmp_path):
    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]
    runner.invoke(main, ["db", "upgrade", *db])
    result = runner.invoke(main, ["directory", "import", *db, str(CONFIG_DIR / "directory.example.yaml")])
    assert result.exit_code == 1 and "directory.unsafe_url" in result.output


def test_the_example_directory_imports_as_the_readme_says(tmp_path, monkeypatch):
    """README: `WARND_WEBHOOK__ALLOW_PRIVATE_URLS=true warnd directory import config/directory.example.yaml`."""
    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]
    runner.invoke(main, ["db", "upgrade", *db])
    monkeypatch.setenv("WARND_WEBHOOK__ALLOW_PRIVATE_URLS", "true")
    result = runner.invoke(main, ["directory", "import", *db, str(CONFIG_DIR / "directory.example.yaml")])
    assert result.exit_code == 0 and "subscribers.inserted: 2" in result.output, result.output


def test_an_unmigrated_database_gets_advice_not_a_stack_trace(tmp_path):
    result = CliRunner().invoke(main, ["token", "create", "--database-url", f"sqlite:///{tmp_path / 'x.db'}",
                                       "--department", "x", "--sender", "x@example.cn"])
    assert result.exit_code == 1 and "warnd db upgrade" in result.output and "Traceback" not in result.output


def test_a_bad_config_file_names_the_setting(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("webhook:\n  concurrency: 0\nlevels:\n  purple: {}\n")
    result = CliRunner().invoke(main, ["db", "upgrade", "--config", str(cfg)])
    assert result.exit_code == 2 and "webhook.concurrency" in result.output and "levels" in result.output
