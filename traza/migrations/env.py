"""Alembic environment: runs against the DSN traza resolves (embedded or DATABASE_URL)."""

from alembic import context
from sqlalchemy import create_engine, pool

from traza.db.engine import sqlalchemy_url
from traza.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or sqlalchemy_url()
engine = create_engine(url, poolclass=pool.NullPool, hide_parameters=True)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
