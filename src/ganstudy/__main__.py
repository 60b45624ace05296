"""``python -m ganstudy``: the ganstudy command line."""

import sys

from ganstudy.cli import main

sys.exit(main())
