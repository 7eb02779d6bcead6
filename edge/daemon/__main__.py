"""``python -m edge.daemon --config FILE [--forward-annotations]``: :func:`edge.daemon.run.main`."""

import sys

from edge.daemon.run import main

if __name__ == "__main__":  # pragma: no cover - importing the module (a walk over every module) runs nothing
    sys.exit(main())
