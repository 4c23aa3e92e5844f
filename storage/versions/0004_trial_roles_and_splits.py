"""trials: the split a trial was scored on, its role (explore, default, replicate, validation), its origin, a label

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 17:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Trials recorded before this revision were scored on the task's dev split.
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('split', sa.String(length=16), nullable=False, server_default='dev'))
        batch_op.add_column(sa.Column('role', sa.String(length=16), nullable=False, server_default='explore'))
        batch_op.add_column(sa.Column('origin_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('label', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key('fk_trials_origin_id', 'trials', ['origin_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_constraint('fk_trials_origin_id', type_='foreignkey')
        batch_op.drop_column('label')
        batch_op.drop_column('origin_id')
        batch_op.drop_column('role')
        batch_op.drop_column('split')
