"""Alembic environment: migrations run on the connection cjlib.db.upgrade hands over."""

from alembic import context
from sqlalchemy import create_engine

from cjlib.db.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from cjlib.config import resolve_database_url

    engine = create_engine(resolve_database_url(context.config.get_main_option("sqlalchemy.url")))
    with engine.connect() as connection:
        _run(connection)


run_migrations_online()
