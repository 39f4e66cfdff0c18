from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tls import tls_stack_broker


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(plain port, TLS port) of the stack's broker with tls.conf.example enabled."""
    with tls_stack_broker(tmp_path) as ports:
        yield ports
