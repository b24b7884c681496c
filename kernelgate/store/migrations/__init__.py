"""Alembic migrations of the store's schema, run by `Store.migrate()` (no alembic.ini).

To change the schema, add a revision by hand in `versions/` (`NNNN_what.py`, with
`down_revision` set to the latest one) and change `kernelgate/store/models.py` to match;
tests/test_store.py fails while the migrated schema and the models differ. Migrations
must run on SQLite and on PostgreSQL: env.py enables batch mode, so `op.batch_alter_table`
makes column changes work on SQLite too.
"""
