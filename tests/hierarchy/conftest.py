"""Fixtures for the hierarchy tests."""

from collections.abc import Callable

import pytest
from django.db import connection


@pytest.fixture
def db_text() -> Callable[[], str]:
    """Every value of every table in the test database as one string, to search for raw identifiers."""

    def dump() -> str:
        chunks = []
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names():
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
                chunks.extend(repr(row) for row in cursor.fetchall())
        return "\n".join(chunks)

    return dump
