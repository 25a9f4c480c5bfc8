"""`make run` (python -m devstack): the whole stack as local processes, for development and the
end-to-end tests. Not part of the product: it is not in the wheel or the image, and nothing under
services/ imports it (tests/deploy/test_import_graph.py). Run from the repository root."""
