"""``python -m medfleet`` runs the command-line interface."""

from medfleet.cli import main

if __name__ == "__main__":
    main()
