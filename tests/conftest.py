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


@pytest.fixture
async def sim(tmp_path):
    """A modem simulator on a pty behind ``tmp_path/modem0``."""
    from textbackd.senders.modem.simulator import ModemSimulator

    s = ModemSimulator(link=str(tmp_path / "modem0"))
    await s.start()
    yield s
    await s.stop()
