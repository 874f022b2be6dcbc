"""Labs: small, real implementations of each algorithm of the course.

Each lab is one module (``labs/<name>.py``) run as a child process with
``python -m labs <name>``; it reports what it does as JSON-lines events (see
``labs/README.md``). This package's ``__init__`` and ``registry`` stay free of
torch so that the TUI can list labs without paying for heavy imports.
"""
