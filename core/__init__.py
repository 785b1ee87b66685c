"""sutro_core: the shared Sutro client."""
__version__ = "0.1.0"
