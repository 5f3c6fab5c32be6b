"""``python -m ursa`` runs the CLI (also the form ``accelerate launch -m ursa`` needs)."""

from ursa.cli import main

main()
