import sys

from backend.cli import main

sys.exit(main(prog="python -m backend"))
