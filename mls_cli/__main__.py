"""``python -m mls_cli``: the ``mls-bridge`` command."""

import sys

from .main import main

sys.exit(main())
