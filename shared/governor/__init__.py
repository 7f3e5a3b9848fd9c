"""Release Governor: gates production deploys on risk and release policy."""

__version__ = "0.1.0"
