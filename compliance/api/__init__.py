"""REST API v1 of the compliance app (mounted under ``/api/``)."""
