"""Settings resolve argument > environment > default, and bad values name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from q2c.errors import Q2CError
from q2c.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("Q2C_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)


def test_defaults_apply_without_environment() -> None:
    settings = load_settings()

    assert settings.database_url is None
    assert settings.retention_days == 30
    assert settings.console_port == 8501
    assert settings.pgdata_dir == Path(".q2c").resolve() / "pgdata"


def test_environment_overrides_default_and_argument_overrides_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("Q2C_RETENTION_DAYS", "7")
    assert load_settings().retention_days == 7
    assert load_settings(retention_days=3).retention_days == 3


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("Q2C_RETENTION_DAYS", "a month", "Q2C_RETENTION_DAYS: Input should be a valid integer"),
        ("Q2C_CONSOLE_PORT", "70000", "Q2C_CONSOLE_PORT: Input should be less than or equal"),
        ("Q2C_LOG_LEVEL", "loud", "Q2C_LOG_LEVEL: Value error, must be one of"),
        ("DATABASE_URL", "mysql://root@localhost/q2c", "DATABASE_URL: Value error, must be a"),
    ],
)
def test_a_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(Q2CError, match="invalid settings") as error:
        load_settings()
    assert message in str(error.value)


def test_config_command_masks_the_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://q2c:s3cret-pw@db.internal:5432/q2c")
    monkeypatch.setenv("Q2C_RETENTION_DAYS", "14")

    result = CliRunner().invoke(main, ["config"])

    assert result.exit_code == 0
    assert "s3cret-pw" not in result.output
    assert "postgresql://q2c:***@db.internal:5432/q2c" in result.output
    assert "Q2C_RETENTION_DAYS" in result.output and "14" in result.output


def test_cli_reports_bad_settings_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("Q2C_DB_POOL_SIZE", "-1")

    result = CliRunner().invoke(main, ["config"])

    assert result.exit_code == 1
    assert "q2c: error: invalid settings" in result.output
    assert "Q2C_DB_POOL_SIZE" in result.output
    assert "Traceback" not in result.output


def test_config_masks_a_password_given_as_a_query_parameter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL",
        "postgresql://db.internal/q2c?user=q2c&password=qp-s3cret&sslpassword=key-s3cret",
    )
    monkeypatch.setenv("Q2C_MIGRATION_DATABASE_URL", "postgresql://owner:own-s3cret@db/q2c")

    result = CliRunner().invoke(main, ["config"])

    assert result.exit_code == 0
    assert "qp-s3cret" not in result.output and "own-s3cret" not in result.output
    assert "key-s3cret" not in result.output
    assert "postgresql://db.internal/q2c?user=q2c&password=***&sslpassword=***" in result.output


def test_migrate_names_a_port_that_is_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://q2c@db.internal:54x2/q2c")

    result = CliRunner().invoke(main, ["migrate"])

    assert result.exit_code == 1
    assert "DATABASE_URL: Value error, has a port that is not a number" in result.output
    assert "Traceback" not in result.output and "54x2" not in result.output
