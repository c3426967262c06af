"""The ``supertask`` command line: `main` in ``main.py``; subcommands load lazily from sibling modules."""
