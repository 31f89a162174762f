"""ls_task.feedback: what wb last wrote into a task's wb_feedback field

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 02:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ls_task') as batch_op:
        batch_op.add_column(sa.Column('feedback', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ls_task') as batch_op:
        batch_op.drop_column('feedback')
