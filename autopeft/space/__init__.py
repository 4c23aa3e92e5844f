"""Search spaces: YAML schema, model layouts, dimensions, structures and their exact cost."""

from autopeft.space.cost import count_trainable
from autopeft.space.layout import ModelLayout, read_layout
from autopeft.space.schema import SpaceSpec, load_space_spec, parse_space, shipped_spaces
from autopeft.space.dimensions import Point
from autopeft.space.search_space import SearchSpace
from autopeft.space.structure import LoraModules, Structure

__all__ = [
    "LoraModules",
    "ModelLayout",
    "Point",
    "SearchSpace",
    "SpaceSpec",
    "Structure",
    "count_trainable",
    "load_space_spec",
    "parse_space",
    "read_layout",
    "shipped_spaces",
]
