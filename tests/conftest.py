"""pytest finds the project through pyproject.toml (pythonpath = ["."]); this file holds what
several test files share at session level. Test helpers live in tests/fixtures.py."""
