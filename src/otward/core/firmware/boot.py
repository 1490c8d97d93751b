"""A staged secure boot, simulated: each stage verified with the key the stage before it pinned.

A device's boot ROM holds one fixed key (in practice the hash of it, fused at the factory) and checks
the first stage, the bootloader, with it; the bootloader's manifest pins the key that signs the kernel,
the kernel's the key of the root file system, and so on. Each stage's version must reach the
anti-rollback counter the device stores for it; after a boot that got through every stage the device
raises the counters to the versions it booted, so an older, vulnerable image never boots again.

The layout of a boot-chain directory (``boot-chain.toml``, read here; the files are read by the
caller's :class:`StageLoader`)::

    rom_key = "rom-key.pem"          # public key or certificate of the first stage's signer
    # rom_key_pin = "sha256/..."     # or the pin itself, as a fuse would hold it (exactly one of both)
    counters = "counters.json"       # stored anti-rollback counters (default; missing file: all 0)

    [[stage]]
    name = "bootloader"
    image = "bootloader.bin"
    manifest = "bootloader.manifest"
"""

from __future__ import annotations

import json
import posixpath
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from otward.core.firmware.checks import is_firmware_check
from otward.core.firmware.manifest import MAX_VERSION, parse_pin
from otward.core.firmware.verify import ImageFacts, Verified, check_image, verify_pinned
from otward.errors import ConfigError, OtwardError, PolicyViolationError

__all__ = [
    "CONFIG_FILE",
    "BootChainSpec",
    "BootOutcome",
    "StageLoader",
    "StageSpec",
    "boot",
    "dump_counters",
    "parse_boot_chain",
    "parse_counters",
]

CONFIG_FILE: Final = "boot-chain.toml"
_STAGE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOP_KEYS: Final = frozenset({"rom_key", "rom_key_pin", "counters", "stage"})
_STAGE_KEYS: Final = frozenset({"name", "image", "manifest"})


@dataclass(frozen=True)
class StageSpec:
    """One boot stage: its name and its files (relative to the boot-chain directory)."""

    name: str
    image: str
    manifest: str


@dataclass(frozen=True)
class BootChainSpec:
    """What ``boot-chain.toml`` says: the stages in boot order, the ROM key (a file or its pin) and
    the counters file."""

    stages: tuple[StageSpec, ...]
    rom_key: str | None
    rom_key_pin: str | None
    counters: str


class StageLoader(Protocol):
    """Reads a stage's files; raises an OtwardError when one is missing or unreadable."""

    def manifest(self, stage: StageSpec) -> bytes: ...

    def measure(self, stage: StageSpec, algorithm: str) -> ImageFacts: ...


@dataclass(frozen=True)
class BootOutcome:
    """How far the boot got: the stages that verified, the one that failed and why, those not run."""

    booted: tuple[tuple[StageSpec, Verified], ...]
    failed: StageSpec | None = None
    failure: OtwardError | None = None
    not_run: tuple[StageSpec, ...] = ()
    counters: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def check(self) -> str:
        """The failure's check id (``firmware.boot.verified`` for a boot that went through)."""
        if self.failure is None:
            return "firmware.boot.verified"
        rule = self.failure.rule
        return rule if rule is not None and is_firmware_check(rule) else "firmware.stage.missing"

    def committed_counters(self) -> dict[str, int]:
        """The counters a device stores after this boot: each raised to the version that booted."""
        result = dict(self.counters)
        for stage, verified in self.booted:
            result[stage.name] = max(result.get(stage.name, 0), verified.manifest.version)
        return result


def boot(spec: BootChainSpec, rom_pin: str, counters: Mapping[str, int], loader: StageLoader) -> BootOutcome:
    """Verify the stages in order; stop at the first that fails (later stages are not even read)."""
    pin: str | None = rom_pin
    booted: list[tuple[StageSpec, Verified]] = []
    previous = "the ROM"
    for index, stage in enumerate(spec.stages):
        try:
            if pin is None:
                raise PolicyViolationError(
                    f"stage {previous} pins no key for the next stage", rule="firmware.signer.unpinned"
                )
            verified = verify_pinned(loader.manifest(stage), pin)
            if verified.manifest.stage != stage.name:
                raise PolicyViolationError(
                    f"the manifest is for stage {verified.manifest.stage!r}", rule="firmware.stage.mismatch"
                )
            stored = counters.get(stage.name, 0)
            if verified.manifest.version < stored:
                raise PolicyViolationError(
                    f"version {verified.manifest.version} is below the stored anti-rollback counter {stored} "
                    "(a downgrade)",
                    rule="firmware.version.rollback",
                )
            check_image(verified.manifest, loader.measure(stage, verified.manifest.hashlib_name))
        except OtwardError as exc:
            return BootOutcome(tuple(booted), stage, exc, spec.stages[index + 1 :], dict(counters))
        booted.append((stage, verified))
        pin = verified.manifest.next_stage_key
        previous = stage.name
    return BootOutcome(tuple(booted), counters=dict(counters))


def parse_boot_chain(text: str, source: str = CONFIG_FILE) -> BootChainSpec:
    """Read ``boot-chain.toml``; ConfigError naming the key for anything wrong."""
    try:
        body = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"{source}: not TOML ({exc})", rule="boot-chain") from None
    unknown = set(body) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}", rule="boot-chain")
    rom_key, rom_key_pin = body.get("rom_key"), body.get("rom_key_pin")
    if (rom_key is None) == (rom_key_pin is None):
        raise ConfigError(f"{source}: set exactly one of rom_key (a file) and rom_key_pin", rule="boot-chain")
    if rom_key is not None:
        rom_key = _relative(rom_key, f"{source}: rom_key")
    if rom_key_pin is not None:
        if not isinstance(rom_key_pin, str):
            raise ConfigError(f"{source}: rom_key_pin must be text", rule="boot-chain")
        try:
            parse_pin(rom_key_pin)
        except OtwardError as exc:
            raise ConfigError(f"{source}: rom_key_pin: {exc.message}", rule="boot-chain") from None
    counters = _relative(body.get("counters", "counters.json"), f"{source}: counters")
    entries = body.get("stage")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: name the stages in boot order as [[stage]] tables", rule="boot-chain")
    stages = tuple(_stage(entry, f"{source}: stage[{i}]") for i, entry in enumerate(entries))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: stage names must be unique ({', '.join(names)})", rule="boot-chain")
    return BootChainSpec(stages, rom_key, rom_key_pin, counters)


def parse_counters(text: str, source: str = "counters.json") -> dict[str, int]:
    """The stored anti-rollback counters: a JSON object of stage name → non-negative integer."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{source}: not JSON ({exc})", rule="boot-chain") from None
    if not isinstance(body, dict):
        raise ConfigError(f"{source}: must be a JSON object of stage name to counter", rule="boot-chain")
    counters: dict[str, int] = {}
    for name, value in body.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VERSION:
            raise ConfigError(
                f"{source}: counter of {name!r} must be an integer 0-{MAX_VERSION}", rule="boot-chain"
            )
        counters[name] = value
    return counters


def dump_counters(counters: Mapping[str, int]) -> str:
    """The counters file's text (sorted, one line per stage)."""
    return json.dumps(dict(sorted(counters.items())), indent=2) + "\n"


def _stage(entry: Any, where: str) -> StageSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not a table", rule="boot-chain")
    unknown = set(entry) - _STAGE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", rule="boot-chain")
    name = entry.get("name")
    if not isinstance(name, str) or not _STAGE.fullmatch(name):
        raise ConfigError(
            f"{where}.name must be 1-64 lower-case letters, digits, '.', '_' or '-'", rule="boot-chain"
        )
    return StageSpec(
        name,
        _relative(entry.get("image"), f"{where}.image"),
        _relative(entry.get("manifest"), f"{where}.manifest"),
    )


def _relative(value: object, where: str) -> str:
    """A file name inside the boot-chain directory: relative, no '..'."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must name a file", rule="boot-chain")
    if posixpath.isabs(value) or ".." in value.split("/") or "\\" in value or "\0" in value:
        raise ConfigError(
            f"{where} {value!r} must be a file inside the boot-chain directory", rule="boot-chain"
        )
    return value
