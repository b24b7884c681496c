"""Alembic environment: migrates the connection that `Store.migrate()` hands over in
`config.attributes["connection"]`, inside one transaction."""

from alembic import context

from kernelgate.store.models import Base

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
