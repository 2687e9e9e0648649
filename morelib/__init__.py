"""morelib: reward modeling on diversified human preferences (Zeng et al., MORE), as an importable library."""

__version__ = "0.1.0"
