"""`python -m detect.backtest INPUT.csv --out RESULT.csv ...` (same as `crowdflow backtest`)."""

import sys

from detect.backtest.cli import main

sys.exit(main(sys.argv[1:]))
