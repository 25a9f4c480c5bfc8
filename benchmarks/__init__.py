"""`make bench`'s own code: the peers Pinexa is measured against, and the bench-only launchers."""
