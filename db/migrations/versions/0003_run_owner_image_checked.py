"""run owner (host, pid, heartbeat) for telling a dead run from a running one; image.checked_at for wb doctor

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 03:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('run') as batch_op:
        batch_op.add_column(sa.Column('owner_host', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('owner_pid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('image') as batch_op:
        batch_op.add_column(sa.Column('checked_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('image') as batch_op:
        batch_op.drop_column('checked_at')
    with op.batch_alter_table('run') as batch_op:
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('owner_pid')
        batch_op.drop_column('owner_host')
