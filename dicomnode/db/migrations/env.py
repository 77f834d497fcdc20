"""alembic's environment for the job database: always run on a connection handed over by
:func:`dicomnode.db.schema.upgrade_schema` (never from an alembic.ini)."""

from alembic import context

from dicomnode.db.models import Base

context.configure(connection=context.config.attributes["connection"], target_metadata=Base.metadata,
                  render_as_batch=True)  # SQLite alters tables by copying them (alembic's batch mode)
with context.begin_transaction():
    context.run_migrations()
