"""The embedded server starts, keeps data across restarts, stops cleanly and is not shared."""

from __future__ import annotations

from pathlib import Path

import psutil
import psycopg
import pytest

from q2c.embedded import EmbeddedPostgres
from q2c.errors import Q2CError
from q2c.urls import with_user


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def _running(pid: int) -> bool:
    """Alive and not merely a zombie waiting for a container's init to reap it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_start_reuse_and_clean_stop(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    with EmbeddedPostgres(pgdata) as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        pid = _postmaster_pid(pgdata)
        assert pid is not None and _running(pid)

    assert _postmaster_pid(pgdata) is None
    assert not _running(pid)

    with EmbeddedPostgres(pgdata) as server, psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [(42,)]


def test_a_second_instance_on_the_same_folder_is_refused_clearly(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    with EmbeddedPostgres(pgdata) as first:
        with pytest.raises(Q2CError, match="in use by Q2C process") as refused:
            EmbeddedPostgres(pgdata).start()
        assert first.url in str(refused.value)
        with psycopg.connect(first.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_that_cannot_start_gives_a_clear_error(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("18\n")  # looks initialised, but holds no cluster

    with pytest.raises(Q2CError, match="could not start"):
        EmbeddedPostgres(pgdata).start()

    # The folder is released again, so the next attempt is not told it is in use.
    with pytest.raises(Q2CError, match="could not start"):
        EmbeddedPostgres(pgdata).start()


def test_the_embedded_server_has_the_runtime_role_and_names_both_urls(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    with EmbeddedPostgres(pgdata, "q2c_app") as server:
        assert server.url is not None
        runtime = with_user(server.url, "q2c_app")
        with psycopg.connect(runtime) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("q2c_app",)
        with pytest.raises(Q2CError) as refused:
            EmbeddedPostgres(pgdata, "q2c_app").start()

    assert f"DATABASE_URL='{runtime}'" in str(refused.value)
    assert f"Q2C_MIGRATION_DATABASE_URL='{server.url}'" in str(refused.value)
