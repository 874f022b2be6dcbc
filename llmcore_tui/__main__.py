"""``python -m llmcore_tui``: the same as the ``llmcore-tui`` command."""

from llmcore_tui.cli import main

if __name__ == "__main__":
    main()
