"""haraqa_site settings plus the bare baseline views, for the benchmark server only."""

from haraqa_site.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
