"""``python -m neurocc`` is the ``neurocc`` command."""
from neurocc.cli import entry

entry()
