"""The reference backend: neurocc's own bit-exact torch simulator of SNN-level graphs (simulator.py)."""
