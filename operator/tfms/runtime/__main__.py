"""`python -m tfms.runtime`: a drop-in for `tensorflow_model_server` (REST only)."""

import sys

from tfms.runtime.main import main

sys.exit(main())
