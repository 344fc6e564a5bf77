"""The single source of netcut's version."""

__version__ = "0.1.0"
