"""The models' shared base, their registry and the exact tied loss. Importing the package
imports no torch: the report reads display names from the registry."""
