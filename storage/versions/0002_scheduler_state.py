"""scheduler: rungs, attempts, heartbeats, timings, hypervolume history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:53:06.461613
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hypervolumes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('rung', sa.Integer(), nullable=False),
    sa.Column('trials_done', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('reference', sa.JSON(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('hypervolumes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hypervolumes_job_id'), ['job_id'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('driver', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rung', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('promoted_from', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('dispatch_wait_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('timings', sa.JSON(), nullable=True))
        batch_op.create_foreign_key(
            'fk_trials_promoted_from', 'trials', ['promoted_from'], ['id'], ondelete='SET NULL'
        )

def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_constraint('fk_trials_promoted_from', type_='foreignkey')
        batch_op.drop_column('timings')
        batch_op.drop_column('dispatch_wait_s')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('promoted_from')
        batch_op.drop_column('attempt')
        batch_op.drop_column('rung')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('driver')

    with op.batch_alter_table('hypervolumes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hypervolumes_job_id'))

    op.drop_table('hypervolumes')
