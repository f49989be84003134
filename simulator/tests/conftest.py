import datetime as dt

import pytest

from simulator.plant import default_plant
from simulator.timeline import day_number

#: A Monday in March (no holidays, no DST change in the following week).
MONDAY = day_number(dt.date(2026, 3, 2))


@pytest.fixture(scope="session")
def small_plant():
    return default_plant(12)


@pytest.fixture(scope="session")
def plant():
    return default_plant()
