"""``python -m ursa`` runs the CLI (also the form ``accelerate launch -m ursa`` needs)."""

from ursa.cli import main

if __name__ == "__main__":  # importing the module (a docs tool, a test) runs nothing
    main()
