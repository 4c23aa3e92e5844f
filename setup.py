"""Package list only; all metadata lives in pyproject.toml.

storage/ (the Alembic environment) and search_spaces/ (the shipped spaces) sit at the top of the
repository (README, "Layout"). They ship inside the wheel as ``autopeft._migrations`` and
``autopeft._search_spaces`` so that an installed autopeft migrates its store and finds its spaces
without the source tree, which a declarative package finder cannot express.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["autopeft", "autopeft.*"])
    + ["autopeft._migrations", "autopeft._migrations.versions", "autopeft._search_spaces"],
    package_dir={"autopeft._migrations": "storage", "autopeft._search_spaces": "search_spaces"},
)
