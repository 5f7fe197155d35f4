"""The data hierarchy (Institution → Patient → Study → Section), training records and scope."""
