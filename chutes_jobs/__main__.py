"""``python -m chutes_jobs``: the ``chutes-jobs`` command (needs the ``cli`` extra)."""

from .cli import main

if __name__ == "__main__":
    main()
