"""``python -m autopeft``: the same command line as the ``autopeft`` console script."""

from autopeft.cli import run

if __name__ == "__main__":
    run()
