"""Where a PostgreSQL connection really goes: the guard reads what libpq reads."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url

from cjlib.errors import GuardRefused
from cjlib.maintenance import is_loopback_address, postgres_targets


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1", "127.0.0.1/32"]
)
def test_loopback_addresses(address):
    assert is_loopback_address(address)


@pytest.mark.parametrize(
    "address", ["192.0.2.7", "10.0.0.1", "::ffff:10.0.0.1", "fd00::2", "localhost", "", "db"]
)
def test_other_addresses_are_not_loopback(address):
    assert not is_loopback_address(address)


def _values(targets):
    return [(kind, value) for kind, value, _source in targets]


def test_url_host_query_hosts_and_hostaddr_are_all_targets():
    url = make_url("postgresql+psycopg://u@localhost/cj?host=/tmp,db2&hostaddr=192.0.2.7")
    assert _values(postgres_targets(url, environ={})) == [
        ("host", "localhost"),
        ("host", "/tmp"),
        ("host", "db2"),
        ("hostaddr", "192.0.2.7"),
    ]


def test_pghost_and_pghostaddr_count_even_beside_a_url_host():
    # libpq fills hostaddr from PGHOSTADDR when the URL does not set it, and then connects
    # to that address whatever the host says.
    url = make_url("postgresql+psycopg://u@localhost/cj")
    env = {"PGHOST": "db.example.com", "PGHOSTADDR": "192.0.2.9"}
    targets = postgres_targets(url, environ=env)
    assert ("host", "db.example.com", "PGHOST") in targets
    assert ("hostaddr", "192.0.2.9", "PGHOSTADDR") in targets


@pytest.fixture
def service_file(tmp_path):
    path = tmp_path / "pg_service.conf"
    path.write_text(
        "# services\n[prod]\nhost = db.example.com\nport=5432\n\n[dev]\nhost=/var/run/pg\n"
        "hostaddr=127.0.0.1\n"
    )
    return path


@pytest.mark.parametrize("how", ["query", "PGSERVICE"])
def test_a_named_service_contributes_its_hosts(service_file, how):
    url = make_url("postgresql+psycopg://u@/cj" + ("?service=prod" if how == "query" else ""))
    env = {"PGSERVICEFILE": str(service_file)}
    if how == "PGSERVICE":
        env["PGSERVICE"] = "prod"
    targets = postgres_targets(url, environ=env)
    assert [(k, v) for k, v, _ in targets] == [("host", "db.example.com")]
    assert f"service prod in {service_file}" in targets[0][2]


def test_servicefile_in_the_url_is_read(service_file):
    url = make_url(f"postgresql+psycopg://u@/cj?service=dev&servicefile={service_file}")
    assert _values(postgres_targets(url, environ={})) == [
        ("host", "/var/run/pg"),
        ("hostaddr", "127.0.0.1"),
    ]


def test_home_service_file_is_read_without_pgservicefile(tmp_path, monkeypatch, service_file):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".pg_service.conf").write_text(service_file.read_text())
    url = make_url("postgresql+psycopg://u@/cj?service=prod")
    assert _values(postgres_targets(url, environ={"HOME": str(tmp_path)})) == [
        ("host", "db.example.com")
    ]


def test_an_undefined_service_is_refused(tmp_path):
    url = make_url("postgresql+psycopg://u@localhost/cj?service=ghost")
    env = {"PGSERVICEFILE": str(tmp_path / "none.conf"), "PGSYSCONFDIR": str(tmp_path)}
    with pytest.raises(GuardRefused, match="service ghost is not defined"):
        postgres_targets(url, environ=env)


@pytest.mark.parametrize("database", ["host=db.example.com dbname=cj", "postgresql://db/cj"])
def test_a_connection_string_in_the_database_name_is_refused(database):
    url = make_url("postgresql+psycopg://u@localhost/x").set(database=database)
    with pytest.raises(GuardRefused, match="connection string"):
        postgres_targets(url, environ={})
