"""sensitivities: an optional tensors blob, so that a measurement made of tensors (EVA's per-matrix
input vectors for LoRA's A) is cached beside the SPT / IST scores under the same kind of key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 14:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sensitivities') as batch:
        batch.add_column(sa.Column('tensors', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sensitivities') as batch:
        batch.drop_column('tensors')
