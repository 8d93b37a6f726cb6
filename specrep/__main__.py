"""`python -m specrep ...` does the same as `specrep ...`."""
from specrep_cli.cli import main

if __name__ == "__main__":
    main()
