"""``python -m swarmd.worker --parent PID --channel-fd N``: one worker, started by exec."""

import sys

from swarmd.worker.main import main

sys.exit(main())
