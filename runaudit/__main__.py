"""``python -m runaudit``."""

from runaudit.cli import main

main()
