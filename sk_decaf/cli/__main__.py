"""``python -m sk_decaf.cli``: the same as ``sk-decaf`` and ``python -m sk_decaf``."""

import sys

from . import main

sys.exit(main())
