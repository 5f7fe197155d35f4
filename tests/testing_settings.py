"""Settings for a test session: the production settings on a throw-away data directory.

Loaded by pytest-django before any conftest, so the data directory is chosen here.
"""

import os
import tempfile

os.environ.setdefault("OBLIVIO_HOME", tempfile.mkdtemp(prefix="oblivio-test-home-"))

from oblivio_site.settings import *  # noqa: E402,F403
