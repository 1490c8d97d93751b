"""Input files read to their limit only; sizes named in messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from otward.adapters.files import format_size, read_limited
from otward.errors import ConfigError, InvalidRequestError


def test_a_file_within_its_limit_is_read_whole(tmp_path):
    path = tmp_path / "request.csr"
    path.write_bytes(b"x" * 1024)
    assert read_limited(path, 1024, "CSR") == b"x" * 1024


def test_an_endless_file_is_refused_after_the_limit():
    with pytest.raises(InvalidRequestError, match=r"CSR /dev/zero is larger than 64 KiB") as caught:
        read_limited(Path("/dev/zero"), 64 << 10, "CSR")
    assert caught.value.rule == "file-size"


def test_an_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read bundle"):
        read_limited(tmp_path / "missing", 10, "bundle")


@pytest.mark.parametrize(
    ("size", "text"), [(100, "100 bytes"), (64 << 10, "64 KiB"), (1 << 20, "1 MiB"), (1536, "1536 bytes")]
)
def test_sizes_are_named_in_their_unit(size, text):
    assert format_size(size) == text
