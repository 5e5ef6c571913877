import pathlib

import pytest

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> pathlib.Path:
    return DATA


@pytest.fixture(autouse=True)
def _fresh_logging():
    """CLI entry points configure structlog globally (level, stream); no test may inherit that."""
    import structlog

    yield
    structlog.reset_defaults()
