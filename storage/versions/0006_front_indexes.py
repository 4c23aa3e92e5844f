"""trials: a structure digest, the task metric and a twin flag on the row, with indexes, so that a
front, a status and the job list read an index of the job's trials instead of every trial

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:00:00
"""

import hashlib
import json

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

COSTS = ('trainable_params', 'peak_memory_bytes', 'step_time_s', 'wall_time_s')
BATCH = 2000


def structure_digest(structure) -> str:
    """As autopeft.store.models.structure_digest (tests/store/test_fronts.py checks that they agree)."""
    canonical = json.dumps(json.loads(json.dumps(structure)), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def upgrade() -> None:
    # plain ALTER TABLE ... ADD COLUMN on both backends: a batch operation would copy the table
    op.add_column('trials', sa.Column('structure_digest', sa.String(length=32), nullable=True))
    op.add_column('trials', sa.Column('metric_value', sa.Float(), nullable=True))
    op.add_column('trials', sa.Column('twinned', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index('ix_trials_job_digest', 'trials', ['job_id', 'rung', 'structure_digest'])

    connection = op.get_bind()
    trials = sa.table('trials', sa.column('id', sa.Integer), sa.column('job_id', sa.Integer),
                      sa.column('rung', sa.Integer), sa.column('role', sa.String),
                      sa.column('structure', sa.JSON), sa.column('structure_digest', sa.String),
                      sa.column('metric_value', sa.Float), sa.column('twinned', sa.Boolean))
    values = sa.table('trial_values', sa.column('trial_id', sa.Integer), sa.column('name', sa.String),
                      sa.column('value', sa.Float))
    jobs = sa.table('jobs', sa.column('id', sa.Integer), sa.column('spec', sa.JSON))

    last = 0
    while True:  # digests are computed here, in batches, as the store computes them for new trials
        rows = connection.execute(
            sa.select(trials.c.id, trials.c.structure).where(trials.c.id > last).order_by(trials.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        connection.execute(
            trials.update().where(trials.c.id == sa.bindparam('trial')).values(structure_digest=sa.bindparam('digest')),
            [{'trial': trial_id, 'digest': structure_digest(structure)} for trial_id, structure in rows],
        )
        last = rows[-1][0]

    other = trials.alias('other')
    twin = sa.exists().where(
        other.c.job_id == trials.c.job_id, other.c.rung == trials.c.rung,
        other.c.structure_digest == trials.c.structure_digest, other.c.id != trials.c.id, other.c.role != 'validation',
    )
    connection.execute(trials.update().where(trials.c.role != 'validation', twin).values(twinned=True))

    for job_id, spec in connection.execute(sa.select(jobs.c.id, jobs.c.spec)).all():
        objectives = (spec or {}).get('objectives') or []
        metric = objectives[0]['name'] if objectives else None
        if metric is None or metric in COSTS:
            continue
        measured = (
            sa.select(values.c.value)
            .where(values.c.trial_id == trials.c.id, values.c.name == metric)
            .scalar_subquery()
        )
        connection.execute(trials.update().where(trials.c.job_id == job_id).values(metric_value=measured))

    op.create_index('ix_trials_job_rung_cost', 'trials', ['job_id', 'state', 'rung', 'twinned', 'trainable_params',
                                                          'metric_value', 'role'])
    op.create_index('ix_trials_job_role', 'trials', ['job_id', 'role', 'state'])
    op.create_index('ix_hypervolumes_job_order', 'hypervolumes', ['job_id', 'id'])


def downgrade() -> None:
    with op.batch_alter_table('hypervolumes', schema=None) as batch_op:
        batch_op.drop_index('ix_hypervolumes_job_order')
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_index('ix_trials_job_role')
        batch_op.drop_index('ix_trials_job_rung_cost')
        batch_op.drop_index('ix_trials_job_digest')
        batch_op.drop_column('twinned')
        batch_op.drop_column('metric_value')
        batch_op.drop_column('structure_digest')
