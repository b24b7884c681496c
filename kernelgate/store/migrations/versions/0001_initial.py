"""Initial schema: users, solo sessions, rooms with members, languages and kernels, and
the audit log.

Revision ID: 0001
Revises: none
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("tier", sa.String(), nullable=False),
        _when("first_seen"),
        _when("last_seen"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_table(
        "solo_sessions",
        sa.Column("kernel_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("kernelspec", sa.String(), nullable=False),
        _when("started_at"),
        _when("ended_at", nullable=True),
        sa.Column("end_reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("kernel_id", name=op.f("pk_solo_sessions")),
    )
    op.create_index(op.f("ix_solo_sessions_user_id"), "solo_sessions", ["user_id"])
    op.create_table(
        "rooms",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("owner_id", sa.String(), nullable=False),
        sa.Column("storage", sa.String(), nullable=False),
        _when("created_at"),
        _when("expires_at", nullable=True),
        _when("stopped_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms")),
    )
    op.create_index(op.f("ix_rooms_owner_id"), "rooms", ["owner_id"])
    op.create_table(
        "members",
        sa.Column("room_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], ondelete="CASCADE", name=op.f("fk_members_room_id_rooms")
        ),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_members")),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'participant', 'viewer')", name=op.f("ck_members_role")
        ),
    )
    op.create_index(op.f("ix_members_user_id"), "members", ["user_id"])
    op.create_table(
        "room_languages",
        sa.Column("room_id", sa.String(), nullable=False),
        sa.Column("kernelspec", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], ondelete="CASCADE",
            name=op.f("fk_room_languages_room_id_rooms"),
        ),
        sa.PrimaryKeyConstraint("room_id", "kernelspec", name=op.f("pk_room_languages")),
    )
    op.create_table(
        "room_kernels",
        sa.Column("room_id", sa.String(), nullable=False),
        sa.Column("kernelspec", sa.String(), nullable=False),
        sa.Column("kernel_id", sa.String(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        _when("started_at"),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], ondelete="CASCADE",
            name=op.f("fk_room_kernels_room_id_rooms"),
        ),
        sa.PrimaryKeyConstraint("room_id", "kernelspec", name=op.f("pk_room_kernels")),
        sa.UniqueConstraint("kernel_id", name=op.f("uq_room_kernels_kernel_id")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _when("at"),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )


def downgrade() -> None:
    for table in ("audit_log", "room_kernels", "room_languages", "members", "rooms",
                  "solo_sessions", "users"):
        op.drop_table(table)
