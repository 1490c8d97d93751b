"""Reaching the database: errors that say what is wrong, and a schema only init, serve and
``otward db upgrade`` change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, make_url, text
from typer.testing import CliRunner

from otward.cli.app import app
from tests.conftest import POSTGRES_ADMIN_URL, _postgres_database

pytestmark = pytest.mark.integration

runner = CliRunner()
MIGRATIONS = "otward.adapters.db:migrations"


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())  # one line, however the console wrapped it


@pytest.fixture
def data(tmp_path):
    directory = tmp_path / "d"
    run("init", "--data", str(directory), "--json")
    return directory


@pytest.fixture
def empty_postgres():
    yield from _postgres_database()


def _server(**changes: object) -> str:
    """The test PostgreSQL server's URL with ``changes`` (port, database, username)."""
    return make_url(POSTGRES_ADMIN_URL).set(**changes).render_as_string(hide_password=False)


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _migrate(url: str, revision: str) -> None:
    """The schema as an older otward left it (or ``revision`` stamped, for one it never had)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("url", "says"),
    [
        pytest.param(
            _server(port=1),
            [
                "cannot connect to the database postgresql+psycopg://",
                ":1/",
                "port 1 failed",
                "Connection refused",
            ],
            id="wrong-port",
        ),
        pytest.param(
            _server(database="otward_no_such_db"),
            ['database "otward_no_such_db" does not exist'],
            id="missing-database",
        ),
        pytest.param(
            _server(username="otward_no_such_user"),
            ['role "otward_no_such_user" does not exist'],
            id="wrong-user",
        ),
    ],
)
def test_an_unreachable_postgresql_database_says_why(data, url, says):
    for args in (("ca", "list"), ("db", "upgrade"), ("cert", "list")):
        output = run(*args, "--data", str(data), "--db", url, code=1)
        assert "migration" not in output
        assert "[database-unreachable]" in output
        for words in says:
            assert words in output


def test_a_sqlite_database_in_a_missing_directory_says_so(data, tmp_path):
    url = f"sqlite:///{tmp_path}/gone/otward.db"
    output = run("ca", "list", "--data", str(data), "--db", url, code=1)
    assert (
        f"cannot open the SQLite database {tmp_path}/gone/otward.db: directory {tmp_path}/gone does not exist"
        in output
    )
    assert not (tmp_path / "gone").exists()


def test_a_sqlite_database_in_an_unwritable_directory_says_so(data):
    """SQLite keeps -wal and -shm next to the database: a read-only directory is named, not a
    migration. root ignores file modes, so it runs the command without CAP_DAC_OVERRIDE."""
    command = [sys.executable, "-m", "otward", "ca", "list", "--data", str(data)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    data.chmod(0o500)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        data.chmod(0o700)
    output = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stderr
    assert f"cannot open the SQLite database {data}/otward.db: directory {data} is not writable" in output


@pytest.mark.postgres
def test_read_only_commands_leave_an_empty_postgresql_database_empty(data, empty_postgres):
    for args in (
        ("ca", "list"),
        ("cert", "list"),
        ("audit", "list"),
        ("device", "list"),
        ("api-token", "list"),
    ):
        output = run(*args, "--data", str(data), "--db", empty_postgres, code=1)
        assert "holds no otward schema: run 'otward db upgrade' to create it" in output, args
        assert "[schema-missing]" in output
    assert _tables(empty_postgres) == []
    output = run("db", "upgrade", "--data", str(data), "--db", empty_postgres)
    assert "database schema upgraded from an empty database to revision" in output
    assert "alembic_version" in _tables(empty_postgres)
    assert json.loads(run("ca", "list", "--data", str(data), "--db", empty_postgres, "--json")) == []


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def blank_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/other.db"
    else:
        yield from _postgres_database()


def test_an_older_schema_is_left_alone_until_db_upgrade(data, blank_url):
    _migrate(blank_url, "0009")
    output = run("cert", "list", "--data", str(data), "--db", blank_url, code=1)
    assert "has schema revision 0009, this otward needs" in output
    assert "run 'otward db upgrade' [schema-outdated]" in output
    assert _revision(blank_url) == "0009"
    info = json.loads(run("db", "upgrade", "--data", str(data), "--db", blank_url, "--json"))
    assert info["before"] == "0009"
    assert info["after"] == _revision(blank_url) != "0009"
    assert "database schema is current" in run("db", "upgrade", "--data", str(data), "--db", blank_url)
    assert json.loads(run("cert", "list", "--data", str(data), "--db", blank_url, "--json"))["total"] == 0


def test_a_schema_from_a_newer_otward_is_never_touched(data, blank_url):
    _migrate(blank_url, "head")
    engine = create_engine(blank_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    for args in (("ca", "list"), ("db", "upgrade")):
        output = run(*args, "--data", str(data), "--db", blank_url, code=1)
        assert "has schema revision f00d, which this otward" in output
        assert "[schema-newer]" in output
    assert _revision(blank_url) == "f00d"


def test_init_and_serve_create_the_schema_themselves(tmp_path):
    """The commands that may migrate still do: a new installation on an empty database works."""
    url = f"sqlite:///{tmp_path}/elsewhere.db"
    run("init", "--data", str(tmp_path / "d"), "--db", url, "--json")
    assert _revision(url) is not None
    assert len(json.loads(run("ca", "list", "--data", str(tmp_path / "d"), "--json"))) == 2


def test_read_only_commands_do_not_create_a_missing_sqlite_file(data, tmp_path):
    """Connecting would create the file (and its -wal, -shm): the command names it and leaves nothing."""
    url = f"sqlite:///{tmp_path}/typo.db"
    for args in (("ca", "list"), ("cert", "list"), ("device", "list")):
        output = run(*args, "--data", str(data), "--db", url, code=1)
        assert f"the SQLite database {tmp_path}/typo.db does not exist: run 'otward init'" in output, args
        assert "[schema-missing]" in output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("typo")) == []
