"""Loading a registered model and running it: what a scoring worker imports, and all of it.

Nothing here imports ``models.training``; a test keeps it so.
"""
