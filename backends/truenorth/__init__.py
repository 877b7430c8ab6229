"""The TrueNorth backend: neurocc's core mapping (mapping.py) of TrueNorth-quantised graphs; runs on the
reference simulator in TrueNorth's semantics, with the mapping's splitter delays in the graph."""
