"""``python -m core``: the command line, and the job worker the dashboard starts for every job.

sqlite-utils imports pandas and numpy whenever they are installed (about 1 CPU-s, most of a command's
start) only to add their scalar types to ``COLUMN_TYPE_MAPPING``, which it reads when it infers a
table's columns from Python values. We never let it infer one: the migrations create every table in
SQL and the store writes rows with its own SQL (``tests/test_cli.py`` pins this). So a command imports
sqlite-utils with the two hidden; one that needs them (a fit, the judges' agreement, an export) still
imports them itself, where it uses them. Done here, in the entry point, before any thread exists: a
module hidden for a moment could not fail another thread's import.
"""

import sys

_hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
sys.modules.update(dict.fromkeys(_hidden))  # None in sys.modules: ``import`` raises ImportError
try:
    import sqlite_utils  # noqa: F401
finally:
    for name in _hidden:
        del sys.modules[name]

from .cli import main  # noqa: E402

sys.exit(main())
