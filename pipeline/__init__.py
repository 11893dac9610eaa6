"""Offline stages and everything that touches disk: stores, sources, the stage runner."""

__version__ = "0.1.0"
