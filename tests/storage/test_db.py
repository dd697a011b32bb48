"""The database engine: what its errors may say."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gwsync.storage.db import create_engine

SECRET = "1//planted-refresh-token-in-a-parameter"


async def test_engine_errors_never_carry_statement_parameters(db_url: str) -> None:
    """A failing statement's error names the SQL but hides the values bound to it."""
    engine = create_engine(db_url)
    try:
        with pytest.raises(DBAPIError) as failed:
            async with engine.begin() as conn:
                await conn.execute(text("SELECT * FROM no_such_table WHERE x = :x"),
                                   {"x": SECRET})
        assert "no_such_table" in str(failed.value)
        assert SECRET not in str(failed.value)
    finally:
        await engine.dispose()
