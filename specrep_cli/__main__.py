"""`python -m specrep_cli ...` does the same as `specrep ...`."""
from .cli import main

if __name__ == "__main__":
    main()
