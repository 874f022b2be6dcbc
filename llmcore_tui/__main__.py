from llmcore_tui.cli import main

main()
