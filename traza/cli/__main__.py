"""`python -m traza.cli …`: the `traza` command, run by the interpreter at hand."""

from traza.cli import main

if __name__ == "__main__":
    main()
