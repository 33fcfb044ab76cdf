"""Hostile and careless input to the real `cj` command: one line, the right exit code, no change.

Every test runs ``cj`` with a controlled environment (no ``CJ_DATABASE_URL``, no ``PG*``
variables, a throw-away ``HOME``) and asserts the exit code, exactly one line on stderr, no
traceback, and that the database is unchanged: file bytes and modification time (and row
counts) for SQLite, tables, views and row counts for PostgreSQL.

Most tests run ``cj`` in this process (the ``cj`` fixture: the same ``main`` the console
script calls, with the environment replaced by the user's, the working folder changed, stdout
and stderr captured at the file descriptors, Python's default warning filters and a warning
log handler on stderr as ``cj`` has them, and every engine the command opened disposed as
process exit would). Starting a Python process that imports cjlib costs about a second of CPU;
a hundred of them were the slowest file of the suite. The tests that are about the process
itself (libpq reading ``PG*`` variables and service files, the exit status of the console
script, the run folder of a whole ``cj pipeline``) still start ``python -m cjlib.cli``
(:func:`run_cj_process`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, inspect, make_url, text

from cjlib.cli._common import console, err_console
from cjlib.cli.main import main as cli_main
from cjlib.datasets import load_dataset
from cjlib.db import get_engine, upgrade
from cjlib.db.models import Base
from cjlib.errors import UsageError
from cjlib.workflow import artefacts as artefacts_module
from cjlib.workflow import register_anchors
from cjlib.workflow.execute import execute_batch
from tests.integration import health_fixtures as fx
from tests.integration.workflow_helpers import small_dataset

CJ = [sys.executable, "-m", "cjlib.cli"]


# --- running cj ---------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def _user_environment(home: Path, env: dict[str, str]) -> dict[str, str]:
    """Only the variables a user would plausibly have, plus ``env``."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        # Wide enough that Rich never wraps the one error line.
        "COLUMNS": "400",
    }
    if "PYTHONPATH" in os.environ:  # lets the suite run against another checkout of cjlib
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return {**base, **env}


def run_cj_process(*args: str, home: Path, cwd: Path | None = None, **env: str):
    """Run ``python -m cjlib.cli ARGS`` in a new process with the user's environment."""
    return subprocess.run(
        [*CJ, *args],
        env=_user_environment(home, env),
        cwd=cwd or home,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass(frozen=True)
class Finished:
    """What a run of ``cj`` left, under the names ``subprocess.run`` gives them."""

    returncode: int
    stdout: str
    stderr: str


def _python_default_warning_filters() -> None:
    # What a `cj` process shows: Python's filters without -W or PYTHONWARNINGS, not pytest's.
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
        warnings.filterwarnings("ignore", category=category, append=True)
    warnings.filterwarnings("ignore", category=ResourceWarning, append=True)


@pytest.fixture
def cj(monkeypatch, capfd) -> Callable[..., Finished]:
    """Run ``cj ARGS`` in this process as :func:`run_cj_process` runs it in a new one."""

    def run(*args: str, home: Path, cwd: Path | None = None, **env: str) -> Finished:
        capfd.readouterr()
        engines: list[Engine] = []

        def opened(connection) -> None:
            engines.append(connection.engine)

        root = logging.getLogger()
        level = root.level
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        with monkeypatch.context() as patch, warnings.catch_warnings(record=True) as caught:
            for key in list(os.environ):
                patch.delenv(key)
            for key, value in _user_environment(home, env).items():
                patch.setenv(key, value)
            patch.chdir(cwd or home)
            # The consoles took their width from COLUMNS when cjlib.cli was imported.
            patch.setattr(console, "_width", 400)
            patch.setattr(err_console, "_width", 400)
            _python_default_warning_filters()
            event.listen(Engine, "engine_connect", opened)
            root.addHandler(handler)
            root.setLevel(logging.WARNING)
            try:
                code = cli_main(list(args))
            finally:
                root.setLevel(level)
                root.removeHandler(handler)
                event.remove(Engine, "engine_connect", opened)
                for engine in engines:  # as the end of the process would
                    engine.dispose()
        out, err = capfd.readouterr()
        shown = "".join(
            warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
            for w in caught
        )
        return Finished(code, out, err + shown)

    return run


def assert_one_line(proc, code: int, *fragments: str) -> str:
    """Exit ``code``, exactly one line on stderr holding every fragment, no traceback."""
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode == code, output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- SQLite databases and their fingerprints ----------------------------------------------


@dataclass(frozen=True)
class FileState:
    """SHA-256 of the file and of its write-ahead log, and the file's modification time.

    Digests, not bytes: a failed comparison of two megabytes makes pytest diff them for hours.
    """

    data: str
    mtime_ns: int
    wal: str


def file_state(path: Path) -> FileState:
    wal = path.with_name(path.name + "-wal")
    return FileState(
        hashlib.sha256(path.read_bytes()).hexdigest(),
        path.stat().st_mtime_ns,
        # A missing and an empty write-ahead log hold the same (nothing).
        hashlib.sha256(wal.read_bytes() if wal.exists() else b"").hexdigest(),
    )


def sqlite_rows(path: Path) -> dict[str, int]:
    # Read-only, so taking the fingerprint changes nothing either.
    with sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names
        }


@pytest.fixture(scope="module")
def _cj_sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cj_sqlite") / "cj.sqlite3"
    engine = get_engine(f"sqlite:///{path}")
    upgrade(engine)
    fx.completed_batch(engine)
    engine.dispose()  # the last connection closing folds the write-ahead log into the file
    return path


@pytest.fixture
def cj_sqlite(_cj_sqlite_template, tmp_path) -> Path:
    """A migrated SQLite cj database holding one completed batch (id 1), a copy of its own."""
    path = tmp_path / "cj.sqlite3"
    shutil.copyfile(_cj_sqlite_template, path)
    return path


@pytest.fixture
def foreign_sqlite(tmp_path) -> Path:
    """A SQLite file of some other application, in rollback-journal mode."""
    path = tmp_path / "notes.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.close()
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# --- PostgreSQL databases and their fingerprints ------------------------------------------


def pg_state(url: str) -> dict[str, object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = inspect(conn)
            tables = sorted(names.get_table_names())
            rows = {
                t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables
            }
            return {"tables": tables, "views": sorted(names.get_view_names()), "rows": rows}
    finally:
        engine.dispose()


@pytest.fixture
def cj_postgres(postgres_server, request) -> str:
    """A migrated PostgreSQL cj database of this test's own, holding one completed batch."""
    url = postgres_server.lease(request, "cj_hostile")
    engine = get_engine(url)
    upgrade(engine)
    fx.completed_batch(engine)
    engine.dispose()
    return url


def _non_loopback_address() -> str | None:
    candidates = {
        info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    }
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks an interface
            candidates.add(probe.getsockname()[0])
    except OSError:
        pass
    usable = sorted(a for a in candidates if not a.startswith("127.") and a != "0.0.0.0")
    return usable[0] if usable else None


class Relay:
    """Accepts TCP on a non-loopback address of this machine and relays to the test server.

    It stands in for a remote PostgreSQL server: a connection to it goes over the network
    interface, yet reaches a real database the test can look at afterwards.
    """

    def __init__(self, listen: str, target: tuple[str, int]):
        self.target = target
        self.server = socket.create_server((listen, 0))
        self.host, self.port = listen, self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def remote_relay(postgres_server) -> Iterator[Relay]:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to stand in for a remote host")
    target = postgres_server.url
    relay = Relay(address, (target.host or "127.0.0.1", target.port or 5432))
    yield relay
    relay.close()


# --- 1. guards that fail closed -----------------------------------------------------------


@pytest.mark.parametrize("environment", ["prd", "live", "production-eu", "ｐｒｏｄ", "prod\u200b"])
def test_reset_outside_the_environment_allow_list_is_refused(cj, cj_sqlite, home, environment):
    before, rows = file_state(cj_sqlite), sqlite_rows(cj_sqlite)
    proc = cj(
        "db", "reset", "--yes", "--database-url", sqlite_url(cj_sqlite),
        home=home, CJ_ENVIRONMENT=environment,
    )  # fmt: skip
    assert_one_line(proc, 2, "is not a development or test environment")
    assert file_state(cj_sqlite) == before and sqlite_rows(cj_sqlite) == rows


def test_cleanup_outside_the_environment_allow_list_is_refused(cj, cj_sqlite, home):
    before = file_state(cj_sqlite)
    proc = cj(
        "batch", "cleanup", "1", "--database-url", sqlite_url(cj_sqlite),
        home=home, CJ_ENVIRONMENT="live",
    )  # fmt: skip
    assert_one_line(proc, 2, "CJ_ENVIRONMENT='live' is not a development or test environment")
    assert file_state(cj_sqlite) == before
    assert sqlite_rows(cj_sqlite)["cj_batch_uploads"] == 1


def test_reset_of_a_foreign_sqlite_file_is_refused(foreign_sqlite, home):
    before = file_state(foreign_sqlite)
    proc = run_cj_process(
        "db", "reset", "--yes", "--database-url", sqlite_url(foreign_sqlite), home=home
    )
    assert_one_line(proc, 2, "is not a cj database", "--force-foreign")
    assert file_state(foreign_sqlite) == before
    assert sqlite_rows(foreign_sqlite) == {"notes": 1}


def test_reset_of_a_file_that_is_not_sqlite_is_refused(cj, tmp_path, home):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    before = file_state(passwd)
    proc = cj("db", "reset", "--yes", "--database-url", sqlite_url(passwd), home=home)
    assert_one_line(proc, 2, "is not a SQLite database file")
    assert file_state(passwd) == before


@pytest.mark.postgres
@pytest.mark.parametrize("via", ["service in the URL", "PGSERVICE", "PGHOSTADDR"])
def test_reset_through_a_non_local_address_hidden_from_the_url_is_refused(
    cj_postgres, remote_relay, home, tmp_path, via
):
    # The URL names no host: libpq takes it from a service file or PGHOSTADDR and connects
    # over the network. The guard must see that address, not assume a unix socket.
    database = cj_postgres.rsplit("/", 1)[1]
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(f"[cjremote]\nhost={remote_relay.host}\nport={remote_relay.port}\n")
    url = f"postgresql+psycopg://postgres@/{database}"
    env = {"PGSERVICEFILE": str(service_file)}
    if via == "service in the URL":
        url += "?service=cjremote"
    elif via == "PGSERVICE":
        env["PGSERVICE"] = "cjremote"
    else:
        env = {"PGHOSTADDR": remote_relay.host, "PGPORT": str(remote_relay.port)}
    before = pg_state(cj_postgres)
    proc = run_cj_process("db", "reset", "--yes", "--database-url", url, home=home, **env)
    assert_one_line(proc, 2, f"host {remote_relay.host}", "is not local")
    assert pg_state(cj_postgres) == before


@pytest.mark.postgres
def test_reset_naming_an_undefined_service_is_refused(cj, cj_postgres, home):
    database = cj_postgres.rsplit("/", 1)[1]
    before = pg_state(cj_postgres)
    url = f"postgresql+psycopg://postgres@127.0.0.1/{database}?service=nowhere"
    proc = cj("db", "reset", "--yes", "--database-url", url, home=home)
    assert_one_line(proc, 2, "service nowhere is not defined")
    assert pg_state(cj_postgres) == before


# --- 2. database URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql+psycopg://cj:s3cret@db.internal:notaport/cj", "invalid port 'notaport'"),
        ("postgresql+psycopg://postgres@[::1/cj", "invalid host"),
        ("postgresql+psycopg://postgres@127.0.0.1:70000/cj", "invalid port '70000'"),
    ],
    ids=["port-notaport", "host-unclosed-bracket", "port-out-of-range"],
)
def test_malformed_url_is_one_line_without_the_password(cj, home, url, fragment):
    proc = cj("db", "upgrade", "--database-url", url, home=home)
    assert_one_line(proc, 2, fragment)
    assert "s3cret" not in proc.stdout + proc.stderr


def test_empty_database_url_is_an_error_not_the_default(cj, tmp_path, home):
    default = tmp_path / "env.sqlite3"
    proc = cj(
        "db", "upgrade", "--database-url", "",
        home=home, cwd=tmp_path, CJ_DATABASE_URL=sqlite_url(default),
    )  # fmt: skip
    assert_one_line(proc, 2, "the database URL is empty")
    assert not default.exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(cj, home, url):
    proc = cj("db", "upgrade", "--database-url", url, home=home)
    assert_one_line(proc, 2, "is an in-memory database")
    assert not proc.stdout


def test_tilde_is_expanded_for_the_whole_sqlite_path(cj, tmp_path, home):
    work = tmp_path / "work"
    work.mkdir()
    proc = cj("db", "upgrade", "--database-url", "sqlite:///~/cj/x.sqlite3", home=home, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert (home / "cj" / "x.sqlite3").is_file()
    assert list(work.iterdir()) == []  # no literal "~" folder beside the command


# --- 3. read-only commands and damaged schemas ----------------------------------------------


def test_health_on_a_foreign_file_says_so_and_leaves_it_alone(cj, foreign_sqlite, home):
    before = file_state(foreign_sqlite)
    proc = cj("health", "--database-url", sqlite_url(foreign_sqlite), home=home)
    assert_one_line(proc, 2, "is not a cj database (it holds notes)")
    assert file_state(foreign_sqlite) == before  # no switch to WAL either
    with sqlite3.connect(foreign_sqlite) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_upgrade_refuses_to_add_cj_tables_to_a_foreign_file(cj, foreign_sqlite, home):
    before = file_state(foreign_sqlite)
    proc = cj("db", "upgrade", "--database-url", sqlite_url(foreign_sqlite), home=home)
    assert_one_line(proc, 2, "is not a cj database", "refusing to add cj tables")
    assert file_state(foreign_sqlite) == before
    assert sqlite_rows(foreign_sqlite) == {"notes": 1}


def test_db_current_calls_a_foreign_file_not_a_cj_database(cj, foreign_sqlite, home):
    before = file_state(foreign_sqlite)
    proc = cj("db", "current", "--database-url", sqlite_url(foreign_sqlite), home=home)
    assert proc.returncode == 1 and not proc.stderr, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines() == [
        f"database {sqlite_url(foreign_sqlite)} is not a cj database (it holds notes): check "
        "--database-url or CJ_DATABASE_URL"
    ]
    assert file_state(foreign_sqlite) == before


@pytest.mark.parametrize("command", [["db", "current"], ["health"], ["batch", "inspect", "1"]])
def test_read_only_commands_on_a_missing_path_create_nothing(cj, tmp_path, home, command):
    missing = tmp_path / "nowhere" / "cj.sqlite3"
    proc = cj(*command, "--database-url", sqlite_url(missing), home=home)
    assert_one_line(proc, 2, f"database file {missing} does not exist")
    assert not missing.parent.exists()


def _drop_view(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP VIEW cj_batch_health"))
    engine.dispose()


def _set_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cj_url(request) -> str:
    if request.param == "sqlite":
        return sqlite_url(request.getfixturevalue("cj_sqlite"))
    return request.getfixturevalue("cj_postgres")


def test_dropped_view_is_named_by_health_and_recreated_by_upgrade(cj, cj_url, home):
    _drop_view(cj_url)
    proc = cj("health", "--database-url", cj_url, home=home)
    assert_one_line(proc, 2, "view cj_batch_health is missing: run `cj db upgrade`")
    proc = cj("db", "current", "--database-url", cj_url, home=home)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "view cj_batch_health is missing: run `cj db upgrade`" in proc.stdout
    proc = cj("db", "upgrade", "--database-url", cj_url, home=home)
    assert proc.returncode == 0, proc.stderr
    state = pg_state(cj_url) if cj_url.startswith("postgresql") else None
    engine = create_engine(cj_url)
    with engine.connect() as conn:
        assert "cj_batch_health" in inspect(conn).get_view_names()
        assert conn.execute(text("SELECT count(*) FROM cj_batch_health")).scalar_one() == 1
    engine.dispose()
    assert state is None or state["rows"]["cj_batch_uploads"] == 1
    assert cj("health", "--database-url", cj_url, home=home).returncode == 0
    current = cj("db", "current", "--database-url", cj_url, home=home)
    assert current.returncode == 0 and "(up to date)" in current.stdout, current.stdout


def test_upgrade_of_a_database_at_an_unknown_revision_is_one_line(cj, cj_url, home):
    _set_revision(cj_url, "0099")
    if cj_url.startswith("sqlite"):
        path = Path(cj_url.removeprefix("sqlite:///"))
        before: object = (file_state(path), sqlite_rows(path))
    else:
        before = pg_state(cj_url)
    proc = cj("db", "upgrade", "--database-url", cj_url, home=home)
    assert_one_line(proc, 2, "revision 0099 that this cjlib does not know", "newer cjlib")
    after = (
        (file_state(path), sqlite_rows(path)) if cj_url.startswith("sqlite") else pg_state(cj_url)
    )
    assert after == before


@pytest.fixture
def immutable(cj_sqlite) -> Iterator[Path]:
    """``cj_sqlite`` made read-only even for root (chattr +i), restored afterwards."""
    made = subprocess.run(["chattr", "+i", str(cj_sqlite)], capture_output=True, check=False)
    if made.returncode != 0:
        os.chmod(cj_sqlite, 0o444)
        if os.access(cj_sqlite, os.W_OK):
            pytest.skip("cannot make a read-only file here (root without chattr)")
        yield cj_sqlite
        os.chmod(cj_sqlite, 0o644)
        return
    try:
        yield cj_sqlite
    finally:
        subprocess.run(["chattr", "-i", str(cj_sqlite)], check=True)


def test_writing_to_a_read_only_sqlite_file_is_one_line(cj, immutable, tmp_path, home):
    dataset = make_dataset(tmp_path)
    before = file_state(immutable)
    proc = cj(
        "anchors", "register", "--assignment-id", "ro", "--course-id", "ENG5",
        "--dataset", str(dataset), "--database-url", sqlite_url(immutable), home=home,
    )  # fmt: skip
    assert_one_line(proc, 2, f"database file {immutable} is read-only")
    assert file_state(immutable) == before


# --- 4. data sets stay inside their folder ------------------------------------------------

ESSAY = "This essay argues a point with care. " * 12


def make_dataset(root: Path) -> Path:
    """A tiny valid data set: two anchors on two grades and two students listed in a CSV."""
    folder = root / "dataset"
    (folder / "anchors").mkdir(parents=True)
    (folder / "students").mkdir()
    for name in ("low", "high"):
        (folder / "anchors" / f"{name}.txt").write_text(f"{name}: {ESSAY}")
    (folder / "anchors.csv").write_text(
        "label,grade,file\nlow,E+,anchors/low.txt\nhigh,A,anchors/high.txt\n"
    )
    for name in ("S1", "S2"):
        (folder / "students" / f"{name}.txt").write_text(f"{name}: {ESSAY}")
    (folder / "students.csv").write_text("essay_id,file\nS1,students/S1.txt\nS2,students/S2.txt\n")
    return folder


def _point_outside(folder: Path, secret: Path, how: str) -> str:
    if how == "dotdot":
        (folder / "students.csv").write_text(
            "essay_id,file\nS1,students/S1.txt\nS2,../secret.txt\n"
        )
        return "resolves outside the data set folder"
    if how == "absolute":
        (folder / "students.csv").write_text(f"essay_id,file\nS1,students/S1.txt\nS2,{secret}\n")
        return "is an absolute path"
    if how == "symlink":
        (folder / "students" / "S2.txt").unlink()
        (folder / "students" / "S2.txt").symlink_to(secret)
        return "resolves outside the data set folder"
    (folder / "anchors.csv").write_text(
        "label,grade,file\nlow,E+,../secret.txt\nhigh,A,anchors/high.txt\n"
    )
    return "resolves outside the data set folder"


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "anchor-dotdot"])
def test_data_set_files_outside_the_folder_are_refused(cj, cj_sqlite, tmp_path, home, how):
    dataset = make_dataset(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET: " + ESSAY)
    fragment = _point_outside(dataset, secret, how)
    before = sqlite_rows(cj_sqlite)
    proc = cj(
        "anchors", "register", "--assignment-id", "hostile", "--course-id", "ENG5",
        "--dataset", str(dataset), "--database-url", sqlite_url(cj_sqlite), home=home,
    )  # fmt: skip
    assert_one_line(proc, 2, fragment)
    assert "TOP SECRET" not in proc.stdout + proc.stderr
    assert sqlite_rows(cj_sqlite) == before


def test_a_file_given_as_data_set_is_not_a_folder(cj, cj_sqlite, tmp_path, home):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    before = sqlite_rows(cj_sqlite)
    proc = cj(
        "anchors", "register", "--assignment-id", "hostile", "--course-id", "ENG5",
        "--dataset", str(passwd), "--database-url", sqlite_url(cj_sqlite), home=home,
    )  # fmt: skip
    assert_one_line(proc, 2, f"data set {passwd} is not a folder")
    assert sqlite_rows(cj_sqlite) == before


def test_the_valid_data_set_loads(tmp_path):
    # The control for the refusals above: the same data set, untouched, is accepted.
    data = load_dataset(make_dataset(tmp_path))
    assert list(data.anchors["label"]) == ["low", "high"]
    assert list(data.students["essay_id"]) == ["S1", "S2"]


def test_fingerprints_see_a_change(cj_sqlite):
    # The unchanged-database assertions above are only as good as the fingerprint.
    before_file, before_rows = file_state(cj_sqlite), sqlite_rows(cj_sqlite)
    engine = get_engine(sqlite_url(cj_sqlite))
    with engine.begin() as conn:
        conn.execute(Base.metadata.tables["event_outbox"].delete())
    engine.dispose()
    assert file_state(cj_sqlite) != before_file
    assert sqlite_rows(cj_sqlite) == {**before_rows, "event_outbox": 0}


@pytest.mark.postgres
def test_cleanup_of_an_id_beyond_the_integer_column_is_not_found(cj, cj_postgres, home):
    before = pg_state(cj_postgres)
    proc = cj("batch", "cleanup", "3000000000", "--database-url", cj_postgres, home=home)
    assert_one_line(proc, 1, "no CJ batch with id 3000000000")
    assert pg_state(cj_postgres) == before


def test_an_essay_with_a_nul_byte_is_refused_before_anything_is_written(
    cj, cj_sqlite, tmp_path, home
):
    # SQLite would store it and PostgreSQL refuse it; both must refuse it, before writing.
    dataset = make_dataset(tmp_path)
    (dataset / "students" / "S2.txt").write_bytes(b"An essay\x00with a NUL byte. " * 20)
    before = sqlite_rows(cj_sqlite)
    proc = cj(
        "anchors", "register", "--assignment-id", "nul", "--course-id", "ENG5",
        "--dataset", str(dataset), "--database-url", sqlite_url(cj_sqlite), home=home,
    )  # fmt: skip
    assert_one_line(proc, 2, "students/S2.txt contains a NUL character")
    assert sqlite_rows(cj_sqlite) == before


# --- 5. batch execute: every option checked before the first write -------------------------


def db_state(url: str) -> object:
    """Everything the unchanged-database assertions compare, on either backend."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return file_state(path), sqlite_rows(path)
    return pg_state(url)


@pytest.fixture
def registered(cj_url, tmp_path) -> tuple[str, Path]:
    """``cj_url`` with the anchors of assignment ``hostile-a`` registered, and its data set."""
    dataset = small_dataset(tmp_path, n_students=4)
    engine = get_engine(cj_url)
    register_anchors(engine, assignment_id="hostile-a", course_id="ENG5", dataset=dataset)
    engine.dispose()
    return cj_url, dataset


def execute_args(url: str, dataset: Path, out: Path, **overrides: str) -> list[str]:
    options = {
        "--assignment-id": "hostile-a",
        "--course-id": "ENG5",
        "--batch-label": "ok",
        "--max-comparisons": "12",
        "--dataset": str(dataset),
        "--output-dir": str(out),
        "--database-url": url,
        **{f"--{key.replace('_', '-')}": value for key, value in overrides.items()},
    }
    return ["batch", "execute", *[part for item in options.items() for part in item]]


@pytest.fixture
def unwritable_dir(tmp_path) -> Iterator[Path]:
    """A folder this process cannot write into, even as root (chattr +i)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        os.chmod(folder, 0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("cannot make an unwritable folder here (root without chattr)")
        yield folder
        os.chmod(folder, 0o755)
        return
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


EXECUTE_REFUSALS = [
    ({"assignment_id": "a" * 300}, "--assignment-id is 300 characters long; at most 100 fit"),
    ({"course_id": "c" * 60}, "--course-id is 60 characters long; at most 50 fit"),
    ({"batch_label": ""}, "--batch-label is empty"),
    ({"batch_label": "   "}, "--batch-label is empty"),
    ({"batch_label": "x" * 256}, "--batch-label is 256 characters long; at most 255 fit"),
    ({"max_comparisons": "99999999999999999999999"}, "--max-comparisons must be between 2 and"),
    ({"max_comparisons": "3000000000"}, "--max-comparisons must be between 2 and 2147483647"),
    ({"seed": "99999999999999999999999"}, "--seed must be between 0 and 9223372036854775807"),
    ({"seed": "-1"}, "--seed must be between 0 and"),
    ({"completion_timeout": "-1"}, "--completion-timeout must be a finite number greater than 0"),
    ({"completion_timeout": "nan"}, "--completion-timeout must be a finite number greater than 0"),
    ({"completion_timeout": "inf"}, "--completion-timeout must be a finite number greater than 0"),
    ({"completion_timeout": "0"}, "--completion-timeout must be a finite number greater than 0"),
    ({"output_dir": "/etc/passwd"}, "--output-dir /etc/passwd is not a folder"),
    ({"output_dir": "FILE/sub"}, "which is not a folder"),
    ({"output_dir": "LOCKED/runs"}, "is not writable"),
]


@pytest.mark.parametrize(
    ("override", "fragment"),
    EXECUTE_REFUSALS,
    ids=[f"{next(iter(o))}={next(iter(o.values()))[:12]}" for o, _ in EXECUTE_REFUSALS],
)
def test_execute_refuses_bad_options_before_writing(
    cj, registered, tmp_path, home, unwritable_dir, override, fragment
):
    url, dataset = registered
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    out = tmp_path / "out"
    override = {
        key: value.replace("FILE", str(a_file)).replace("LOCKED", str(unwritable_dir))
        for key, value in override.items()
    }
    before = db_state(url)
    args = execute_args(url, dataset, out, **override)
    proc = cj(*args, "--await-completion", home=home)
    assert_one_line(proc, 2, fragment)
    assert db_state(url) == before
    assert not out.exists() and list(unwritable_dir.iterdir()) == []
    assert a_file.read_text() == "not a folder\n"


def test_execute_with_valid_options_writes_a_batch(cj, registered, tmp_path, home):
    # The control for the refusals above: the same base options run a batch.
    url, dataset = registered
    out = tmp_path / "out"
    proc = cj(*execute_args(url, dataset, out), home=home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = out.iterdir()
    assert (run_dir / "assessment_run.execute.json").is_file()


def test_a_nul_byte_in_a_label_is_refused_on_both_backends(registered, tmp_path):
    # argv cannot carry NUL, but a notebook can: execute_batch itself refuses it.
    url, dataset = registered
    before = db_state(url)
    engine = get_engine(url)
    try:
        with pytest.raises(UsageError, match=r"--batch-label contains a NUL character"):
            execute_batch(
                engine, assignment_id="hostile-a", course_id="ENG5", batch_label="a\x00b",
                max_comparisons=12, dataset=dataset, output_dir=tmp_path / "out",
            )  # fmt: skip
    finally:
        engine.dispose()
    assert db_state(url) == before


@pytest.mark.parametrize(
    ("essay_id", "fragment"),
    [
        ("S" * 150, "students.csv row 3: essay_id is 150 characters long; at most 100 fit"),
        ("S\x00NUL", "students.csv row 3: essay_id contains a NUL character"),
    ],
    ids=["too-long", "nul"],
)
def test_essay_ids_that_do_not_fit_are_refused_on_both_backends(
    cj, registered, tmp_path, home, essay_id, fragment
):
    url, dataset = registered
    listing = dataset / "students.csv"
    lines = listing.read_text().splitlines()
    _, file = lines[2].split(",")
    lines[2] = f"{essay_id},{file}"
    listing.write_text("\n".join(lines) + "\n")
    before = db_state(url)
    proc = cj(*execute_args(url, dataset, tmp_path / "out"), home=home)
    assert_one_line(proc, 2, fragment)
    assert db_state(url) == before
    assert not (tmp_path / "out").exists()


# --- 6. artefacts that fail after the batch is committed ----------------------------------


def test_failed_artefacts_leave_the_batch_and_say_how_to_write_them_again(
    cj, registered, tmp_path, home, monkeypatch
):
    url, dataset = registered
    out = tmp_path / "out"

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "x.json"))

    monkeypatch.setattr(artefacts_module, "write_execute_artefacts", disk_full)
    # Through `cj`, which closes the command's connections as its end would: a connection
    # left open (and garbage-collected later) would fold the write-ahead log into the file
    # between the two fingerprints below.
    proc = cj(*execute_args(url, dataset, out, batch_label="disk-full"), home=home)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert len(err) == 1, err
    batch_id = _batch_id_of(url, "disk-full")
    assert f"batch {batch_id} is complete in the database" in err[0]
    assert "No space left on device" in err[0]
    assert f"`cj batch artefacts {batch_id} --output-dir DIR`" in err[0]
    engine = create_engine(url)
    with engine.connect() as conn:
        state = conn.execute(
            text("SELECT state FROM cj_batch_states WHERE batch_id = :b"), {"b": batch_id}
        ).scalar_one()
    engine.dispose()
    assert state == "COMPLETED"
    monkeypatch.undo()

    before = db_state(url)
    first = cj("batch", "artefacts", str(batch_id), "--output-dir", str(out),
                   "--database-url", url, home=home)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    (run_dir,) = out.iterdir()
    written = sorted(p.name for p in run_dir.iterdir())
    assert {"assessment_run.execute.json", "grade_projections.csv"} <= set(written)
    again = cj("batch", "artefacts", str(batch_id), "--output-dir", str(out),
                   "--database-url", url, home=home)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert list(out.iterdir()) == [run_dir]  # idempotent: the same folder, the same files
    assert sorted(p.name for p in run_dir.iterdir()) == written
    assert db_state(url) == before  # read-only on the database


def _batch_id_of(url: str, label: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT id FROM cj_batch_uploads WHERE batch_label = :l"), {"l": label}
        ).scalar_one()
    engine.dispose()
    return int(found)


def test_artefacts_of_a_missing_batch_or_to_a_file_are_one_line(cj, cj_sqlite, tmp_path, home):
    url, before = sqlite_url(cj_sqlite), db_state(sqlite_url(cj_sqlite))
    proc = cj("batch", "artefacts", "42", "--output-dir", str(tmp_path / "o"),
                  "--database-url", url, home=home)  # fmt: skip
    assert_one_line(proc, 1, "no CJ batch with id 42")
    proc = cj("batch", "artefacts", "1", "--output-dir", "/etc/passwd",
                  "--database-url", url, home=home)  # fmt: skip
    assert_one_line(proc, 2, "--output-dir /etc/passwd is not a folder")
    assert db_state(url) == before and not (tmp_path / "o").exists()


# --- 7. user text is never Rich markup ------------------------------------------------------

HOSTILE_LABELS = ["[/oops]", "<script>alert(9)</script>", "[bold red]x[/]"]


@pytest.mark.parametrize("label", HOSTILE_LABELS)
def test_labels_with_markup_print_literally(cj, registered, tmp_path, home, label):
    url, dataset = registered
    proc = cj(*execute_args(url, dataset, tmp_path / "out", batch_label=label), home=home)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert label in proc.stdout
    batch_id = _batch_id_of(url, label)
    shown = cj("batch", "inspect", str(batch_id), "--database-url", url, home=home)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert label in shown.stdout


def test_health_prints_labels_literally_and_seconds_in_the_detail(cj, cj_sqlite, home):
    engine = get_engine(sqlite_url(cj_sqlite))
    fx.quiet_batch(engine, label="[/oops] <script>", idle_seconds=5)
    engine.dispose()
    before = db_state(sqlite_url(cj_sqlite))
    proc = cj("health", "--stalled-after", "1s", "--database-url", sqlite_url(cj_sqlite), home=home)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "[/oops] <script>" in proc.stdout
    assert re.search(r"idle \d+ s > 1 s, 4 of 8 callbacks pending", proc.stdout), proc.stdout
    assert "0 min" not in proc.stdout
    assert db_state(sqlite_url(cj_sqlite)) == before


# --- 8. ids beyond the columns ------------------------------------------------------------


def test_inspect_of_an_id_beyond_the_column_is_not_found(cj, cj_url, home):
    before = db_state(cj_url)
    proc = cj("batch", "inspect", "9223372036854775807", "--database-url", cj_url, home=home)
    assert_one_line(proc, 1, "no CJ batch with id 9223372036854775807")
    assert db_state(cj_url) == before


def test_cleanup_of_an_id_beyond_the_column_is_not_found_on_sqlite_too(cj, cj_sqlite, home):
    url = sqlite_url(cj_sqlite)
    before = db_state(url)
    proc = cj("batch", "cleanup", "3000000000", "--database-url", url, home=home)
    assert_one_line(proc, 1, "no CJ batch with id 3000000000")
    assert db_state(url) == before


# --- 9. cj pipeline -----------------------------------------------------------------------


def test_pipeline_with_an_unreachable_database_exits_2_before_any_kernel(cj, tmp_path, home):
    out = tmp_path / "runs"
    proc = cj(
        "pipeline", "--database-url", "postgresql+psycopg://cj:s3cret@127.0.0.1:1/cj",
        "--output-dir", str(out), home=home,
    )  # fmt: skip
    assert_one_line(proc, 2, "cannot connect to postgresql+psycopg://cj:***@127.0.0.1:1/cj")
    assert "running" not in proc.stderr and "s3cret" not in proc.stdout + proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("parameter", "fragment"),
    [
        ("run_dir=/tmp/x", "-p run_dir is set by the pipeline itself: the pipeline makes a fresh "
         "run folder for every run; use --output-dir"),
        ("max_comparisons=abc", "-p max_comparisons must be an integer of at least 2 (got 'abc')"),
        ("seed=-5", "-p seed must be between 0 and"),
        ("batch_label=", "-p batch_label is empty"),
    ],
    ids=["run_dir", "max_comparisons", "seed", "batch_label"],
)  # fmt: skip
def test_pipeline_names_bad_p_parameters_as_given(cj, tmp_path, home, parameter, fragment):
    out, db = tmp_path / "runs", tmp_path / "cj.sqlite3"
    proc = cj(
        "pipeline", "--database-url", sqlite_url(db), "--output-dir", str(out), "-p", parameter,
        home=home,
    )  # fmt: skip
    line = assert_one_line(proc, 2, fragment)
    assert "--max-comparisons" not in line and "--database-url" not in line
    assert not out.exists() and not db.exists()


@pytest.mark.postgres
def test_pipeline_run_folder_never_holds_the_database_password(
    postgres_server, request, tmp_path, home
):
    # Trust authentication ignores the password, so any one will do; it must appear nowhere.
    password = "Pw-9f3b1c-never-written"
    url = make_url(postgres_server.lease(request, "cj_secret")).set(password=password)
    real = url.render_as_string(hide_password=False)
    out = tmp_path / "runs"
    proc = run_cj_process(
        "pipeline", "--database-url", real, "--output-dir", str(out), "--max-comparisons", "40",
        home=home,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert password not in proc.stdout + proc.stderr
    (run_dir,) = out.iterdir()
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"02_execute_eng5_batch.ipynb", "validation_report.html"} <= {p.name for p in files}
    leaking = [p.name for p in files if password.encode() in p.read_bytes()]
    assert leaking == []
    # The notebooks did use the database: the masked URL is in their parameters.
    executed = (run_dir / "02_execute_eng5_batch.ipynb").read_text()
    assert url.render_as_string(hide_password=True).replace("/", "\\/") in executed or (
        url.render_as_string(hide_password=True) in executed
    )
    assert pg_state(real)["rows"]["cj_batch_uploads"] == 1


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--assignment-id", "a" * 300, "--assignment-id is 300 characters long; at most 100 fit"),
        ("--course-id", "", "--course-id is empty"),
    ],
    ids=["long-assignment", "empty-course"],
)
def test_anchor_registration_refuses_ids_that_do_not_fit(
    cj, cj_url, tmp_path, home, option, value, fragment
):
    dataset = make_dataset(tmp_path)
    options = {"--assignment-id": "fits", "--course-id": "ENG5", option: value}
    before = db_state(cj_url)
    proc = cj(
        "anchors", "register", *[part for item in options.items() for part in item],
        "--dataset", str(dataset), "--database-url", cj_url, home=home,
    )  # fmt: skip
    assert_one_line(proc, 2, fragment)
    assert db_state(cj_url) == before


def test_force_foreign_reaches_upgrade_and_reset(cj, foreign_sqlite, tmp_path, home):
    # The refusals above are overridden only by the flag, and the flag reaches the domain.
    url = sqlite_url(foreign_sqlite)
    proc = cj("db", "reset", "--yes", "--force-foreign", "--database-url", url, home=home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = sqlite_rows(foreign_sqlite)
    assert "notes" not in rows and rows["cj_batch_uploads"] == 0
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.close()
    proc = cj("db", "upgrade", "--force-foreign", "--database-url", sqlite_url(other),
                  home=home)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = sqlite_rows(other)
    assert rows["notes"] == 1 and rows["cj_batch_uploads"] == 0
