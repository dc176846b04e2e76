#!/usr/bin/env python3
"""Generate music with an ACE-Step 1.5 pod API or Runpod endpoint (see `--help`).

The same client as `python -m acestep_worker.client`; kept at the top level because the original
image's users run `python generate_music.py --api-url ...`.
"""

import sys

from acestep_worker.client import main

if __name__ == "__main__":
    sys.exit(main())
