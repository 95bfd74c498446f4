"""`python -m mlops_dagster.cli ...`, the same as the `mlops-dagster` console script."""

import sys

from mlops_dagster.cli import main

if __name__ == "__main__":
    sys.exit(main())
