"""``python -m dicomnode``: the same as the ``dicomnode`` command."""

import sys

from dicomnode.cli import main

if __name__ == "__main__":
    sys.exit(main())
