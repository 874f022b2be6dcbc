"""Child processes the app starts for work that needs heavy imports (torch), so that the TUI
process never loads them. Each is ``python -m llmcore_tui.workers.NAME ...``; the core module
that starts it owns its input and output formats."""
