"""The search-space DSL: YAML -> validated ``SearchSpace`` -> fixed-dimensional encoding."""

from autopeft.space.identity import space_hash
from autopeft.space.loader import load_space, load_space_text, parse_space
from autopeft.space.overrides import apply_overrides
from autopeft.space.schema import SearchSpace
from autopeft.space.shipped import shipped_spaces

__all__ = [
    "SearchSpace", "apply_overrides", "load_space", "load_space_text", "parse_space", "shipped_spaces", "space_hash",
]
