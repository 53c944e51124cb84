"""``python -m chutes_jobs.cli``: the ``chutes-jobs`` command."""

from . import main

if __name__ == "__main__":
    main()
