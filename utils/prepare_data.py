"""`python -m utils.prepare_data`: see utils.data.prepare."""
import sys

from utils.data.prepare import main

if __name__ == "__main__":
    sys.exit(main())
