"""Frontends: model formats -> ANN-level IR."""
