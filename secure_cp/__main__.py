"""``python -m secure_cp``: the ``secure-cp`` command."""
import sys

from .cli import main

sys.exit(main())
