"""``python -m kisflow``: the same command line as the ``kisflow`` script."""

from kisflow.cli import main

if __name__ == "__main__":
    main()
