"""Backends: one module or sub-package per target behind one small interface."""
