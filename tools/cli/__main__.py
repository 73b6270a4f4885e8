"""``python -m tools.cli`` is ``edgeops``: for a venv that has the package's files but not its script."""

from tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
