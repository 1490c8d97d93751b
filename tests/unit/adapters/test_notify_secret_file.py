"""Secret files of notification channels: only their owner may read them."""

from __future__ import annotations

import os

import pytest

from otward.adapters.notify import read_secret_file
from otward.errors import ConfigError


def _write(path, data: bytes = b"s3cret\n", mode: int = 0o600):
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_an_owner_only_file_is_read_without_its_line_break(tmp_path, mode):
    assert read_secret_file(_write(tmp_path / "s", mode=mode), "k") == b"s3cret"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_others_may_read_is_refused_with_its_mode(tmp_path, mode):
    with pytest.raises(ConfigError, match=rf"notify\.x: .* has mode {mode:04o}; .*chmod 600") as raised:
        read_secret_file(_write(tmp_path / "s", mode=mode), "notify.x")
    assert raised.value.rule == "secret-file-mode"
    assert "s3cret" not in raised.value.message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _write(p, b"\n"), "is empty"),
        (lambda p: _write(p, b"x" * 5000), "longer than 4096 bytes"),
        (lambda p: p.mkdir(mode=0o700) or p, "not a regular file"),
        (lambda p: p, "cannot read"),
        (lambda p: os.symlink(_write(p.with_name("target")), p) or p, "cannot read"),  # no symlinks
    ],
    ids=["empty", "long", "directory", "missing", "symlink"],
)
def test_unusable_files_are_refused(tmp_path, make, message):
    path = tmp_path / "secret"
    make(path)
    with pytest.raises(ConfigError, match=message):
        read_secret_file(path, "notify.smtp.password_file")
