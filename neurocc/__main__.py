"""``python -m neurocc`` is the ``neurocc`` command."""
import sys

from neurocc.cli import main

sys.exit(main())
