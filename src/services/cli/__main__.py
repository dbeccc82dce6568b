"""``python -m dicomwire.services.cli``: the ``dicomwire`` command."""

import sys

from . import main

sys.exit(main())
