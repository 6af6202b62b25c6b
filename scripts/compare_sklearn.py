"""fastem vs scikit-learn, seconds per iteration: scripts/compare_peers.py with ``--libs fastem,sklearn``.

Kept for existing commands; compare_peers.py adds Intel oneDAL (daal4py), the
overlapping data kind, the iteration check and the time-to-answer table.

    python scripts/compare_sklearn.py --quick     # same options as compare_peers.py
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a == "--libs" or a.startswith("--libs=") for a in args):
        args = ["--libs", "fastem,sklearn", *args]
    sys.argv = [str(Path(__file__).with_name("compare_peers.py")), *args]
    runpy.run_path(sys.argv[0], run_name="__main__")
