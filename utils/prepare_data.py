"""`python -m utils.prepare_data`: see utils.data.prepare."""
from utils.data.prepare import main

if __name__ == "__main__":
    raise SystemExit(main())
