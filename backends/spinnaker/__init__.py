"""The SpiNNaker backends: a PyNN program for sPyNNaker, its virtual-board mapping, its runs on NEST."""
