"""`python -m utils.build_embeddings`: see utils.data.build_embeddings."""
from utils.data.build_embeddings import main

if __name__ == "__main__":
    raise SystemExit(main())
