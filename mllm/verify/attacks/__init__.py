"""The built-in attacks; importing this package registers them (in this order) in ``ATTACKS``."""

from . import integrity, membership, reconstruction, relearning, utility  # noqa: F401  (registration)
