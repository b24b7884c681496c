"""Room storage: snapshots, and the objects and chunks of the database storage backend.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("room_id", sa.String(), nullable=False),
        sa.Column("storage", sa.String(), nullable=False),
        _when("created_at"),
        _when("expires_at", nullable=True),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
    )
    op.create_index(op.f("ix_snapshots_room_id"), "snapshots", ["room_id"])
    op.create_table(
        "storage_objects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_objects")),
        sa.UniqueConstraint("key", name=op.f("uq_storage_objects_key")),
    )
    op.create_table(
        "storage_chunks",
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"], ["storage_objects.id"], ondelete="CASCADE",
            name=op.f("fk_storage_chunks_object_id_storage_objects"),
        ),
        sa.PrimaryKeyConstraint("object_id", "seq", name=op.f("pk_storage_chunks")),
    )


def downgrade() -> None:
    op.drop_table("storage_chunks")
    op.drop_table("storage_objects")
    op.drop_index(op.f("ix_snapshots_room_id"), table_name="snapshots")
    op.drop_table("snapshots")
