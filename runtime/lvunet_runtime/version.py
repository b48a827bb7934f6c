"""The runtime's version (one place; the package and its commands read it here)."""

__version__ = "0.1.0"
