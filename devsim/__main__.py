"""``python -m devsim`` is the ``devsim`` command."""
import sys

from devsim.cli import main

sys.exit(main())
