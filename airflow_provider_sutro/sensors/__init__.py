"""Sutro provider subpackage."""
