"""Package list only; all metadata lives in pyproject.toml.

storage/ is the Alembic environment at the top of the repository (DESIGN.md). It ships inside the
wheel as ``autopeft._migrations`` so that an installed autopeft migrates its store without the
source tree, which a declarative package finder cannot express.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["autopeft", "autopeft.*"])
    + ["autopeft._migrations", "autopeft._migrations.versions"],
    package_dir={"autopeft._migrations": "storage"},
)
