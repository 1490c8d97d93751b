"""The simulated staged secure boot: bootloader → kernel → rootfs, each stage verified with the key the
one before pinned; every failure names its stage and stops the boot there."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest

from otward.core.firmware.boot import (
    BootChainSpec,
    StageSpec,
    boot,
    dump_counters,
    parse_boot_chain,
    parse_counters,
)
from otward.core.firmware.envelope import hash_for_name, sign_content
from otward.core.firmware.manifest import Manifest, dump_manifest, key_pin
from otward.core.firmware.verify import ImageFacts
from otward.errors import ConfigError, NotFoundError
from tests.unit.core.firmware.pki import NOW, Signer, make_ca, make_signer

STAGES = ("bootloader", "kernel", "rootfs")


@dataclass
class MemoryLoader:
    """Stage files in memory; records what the boot read."""

    manifests: dict[str, bytes]
    images: dict[str, bytes]
    read: list[str] = field(default_factory=list)

    def manifest(self, stage: StageSpec) -> bytes:
        self.read.append(f"{stage.name}.manifest")
        if stage.name not in self.manifests:
            raise NotFoundError(f"no manifest {stage.manifest}", rule="file")
        return self.manifests[stage.name]

    def measure(self, stage: StageSpec, algorithm: str) -> ImageFacts:
        self.read.append(f"{stage.name}.image")
        data = self.images[stage.name]
        return ImageFacts(len(data), hashlib.new(algorithm, data).digest())


@dataclass
class Chain:
    signers: dict[str, Signer]
    spec: BootChainSpec
    loader: MemoryLoader

    @property
    def rom_pin(self) -> str:
        return key_pin(self.signers["bootloader"].key.public_key())


def signed(stage: str, image: bytes, signer: Signer, version: int, next_signer: Signer | None) -> bytes:
    manifest = Manifest(
        stage=stage,
        version=version,
        size=len(image),
        digest_algorithm="sha-256",
        digest=hashlib.sha256(image).digest(),
        signed_at=NOW,
        next_stage_key=key_pin(next_signer.key.public_key()) if next_signer else None,
    )
    return sign_content(dump_manifest(manifest), signer.certificate, signer.key, [], hash_for_name("sha256"))


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    ca = make_ca("vendor")
    kinds = {"bootloader": "ec-p384", "kernel": "rsa-2048", "rootfs": "ec-p256"}
    return {name: make_signer(ca, kind, cn=f"{name} signer") for name, kind in kinds.items()}


@pytest.fixture
def chain(signers) -> Chain:
    images = {name: f"{name} image ".encode() * 100 for name in STAGES}
    nexts = {"bootloader": signers["kernel"], "kernel": signers["rootfs"], "rootfs": None}
    manifests = {name: signed(name, images[name], signers[name], 3, nexts[name]) for name in STAGES}
    spec = BootChainSpec(
        tuple(StageSpec(n, f"{n}.bin", f"{n}.manifest") for n in STAGES), None, "sha256/x", "counters.json"
    )
    return Chain(signers, spec, MemoryLoader(manifests, images))


def test_a_good_chain_boots_and_commits_counters(chain):
    outcome = boot(chain.spec, chain.rom_pin, {"bootloader": 2}, chain.loader)
    assert outcome.ok
    assert outcome.check == "firmware.boot.verified"
    assert [stage.name for stage, _ in outcome.booted] == list(STAGES)
    assert outcome.committed_counters() == {"bootloader": 3, "kernel": 3, "rootfs": 3}


def failing(chain: Chain, counters=None) -> tuple[str, str, list[str]]:
    outcome = boot(chain.spec, chain.rom_pin, counters or {}, chain.loader)
    assert not outcome.ok
    assert outcome.failed is not None
    assert outcome.failure is not None
    later = list(STAGES[STAGES.index(outcome.failed.name) + 1 :])
    assert [s.name for s in outcome.not_run] == later
    for name in later:  # the boot stopped: nothing of a later stage was even read
        assert not any(entry.startswith(name) for entry in chain.loader.read)
    return outcome.failed.name, outcome.check, later


def test_tampered_kernel_image_stops_the_boot_at_the_kernel(chain):
    chain.loader.images["kernel"] = chain.loader.images["kernel"][:-1] + b"X"
    assert failing(chain)[:2] == ("kernel", "firmware.image.mismatch")


def test_tampered_rootfs_manifest_is_named(chain):
    data = chain.loader.manifests["rootfs"]
    position = data.index(b'"version":3')
    chain.loader.manifests["rootfs"] = data[:position] + b'"version":4' + data[position + 11 :]
    assert failing(chain)[:2] == ("rootfs", "firmware.signature.invalid")


def test_unsigned_kernel_is_refused(chain):
    chain.loader.manifests["kernel"] = b'{"type":"otward-firmware-manifest","format":1}'
    assert failing(chain)[:2] == ("kernel", "firmware.signature.missing")


def test_kernel_signed_by_another_key_is_refused(chain, signers):
    image = chain.loader.images["kernel"]
    chain.loader.manifests["kernel"] = signed("kernel", image, signers["rootfs"], 3, signers["rootfs"])
    assert failing(chain)[:2] == ("kernel", "firmware.signer.unpinned")


def test_bootloader_not_signed_with_the_rom_key_is_refused(chain, signers):
    image = chain.loader.images["bootloader"]
    chain.loader.manifests["bootloader"] = signed(
        "bootloader", image, signers["kernel"], 3, signers["kernel"]
    )
    assert failing(chain)[:2] == ("bootloader", "firmware.signer.unpinned")


def test_downgraded_kernel_is_refused(chain):
    assert failing(chain, {"kernel": 4})[:2] == ("kernel", "firmware.version.rollback")


def test_a_manifest_for_another_stage_is_refused(chain, signers):
    image = chain.loader.images["kernel"]
    chain.loader.manifests["kernel"] = signed("rootfs", image, signers["kernel"], 3, signers["rootfs"])
    assert failing(chain)[:2] == ("kernel", "firmware.stage.mismatch")


def test_a_stage_that_pins_nothing_stops_the_next(chain, signers):
    image = chain.loader.images["kernel"]
    chain.loader.manifests["kernel"] = signed("kernel", image, signers["kernel"], 3, None)
    assert failing(chain)[:2] == ("rootfs", "firmware.signer.unpinned")


def test_a_missing_manifest_is_named(chain):
    del chain.loader.manifests["rootfs"]
    assert failing(chain)[:2] == ("rootfs", "firmware.stage.missing")


def test_boot_chain_layout_parses():
    spec = parse_boot_chain(
        'rom_key = "rom.pem"\n[[stage]]\nname = "bootloader"\nimage = "bl.bin"\nmanifest = "bl.p7"\n'
        '[[stage]]\nname = "kernel"\nimage = "images/k.bin"\nmanifest = "k.p7"\n'
    )
    assert [s.name for s in spec.stages] == ["bootloader", "kernel"]
    assert spec.rom_key == "rom.pem"
    assert spec.counters == "counters.json"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("rom_key = 'a'\n", "stages"),
        ("[[stage]]\nname='a'\nimage='a'\nmanifest='b'\n", "exactly one of rom_key"),
        (
            "rom_key='a'\nrom_key_pin='sha256/x'\n[[stage]]\nname='a'\nimage='a'\nmanifest='b'\n",
            "exactly one",
        ),
        ("rom_key_pin='sha256/x'\n[[stage]]\nname='a'\nimage='a'\nmanifest='b'\n", "rom_key_pin"),
        ("rom_key='../k'\n[[stage]]\nname='a'\nimage='a'\nmanifest='b'\n", "inside the boot-chain"),
        ("rom_key='k'\n[[stage]]\nname='a'\nimage='/etc/passwd'\nmanifest='b'\n", "inside the boot-chain"),
        ("rom_key='k'\n[[stage]]\nname='A B'\nimage='a'\nmanifest='b'\n", "name must"),
        ("rom_key='k'\n[[stage]]\nname='a'\nimage='a'\nmanifest='b'\nextra=1\n", "unknown key"),
        ("rom_key='k'\n" + "[[stage]]\nname='a'\nimage='a'\nmanifest='b'\n" * 2, "unique"),
        ("rom_key='k'\nbogus=1\n[[stage]]\nname='a'\nimage='a'\nmanifest='b'\n", "unknown key"),
        ("rom_key = [", "not TOML"),
    ],
)
def test_bad_layouts_are_refused(text, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_boot_chain(text)


def test_counters_round_trip_and_refusals():
    assert parse_counters(dump_counters({"kernel": 4, "bootloader": 2})) == {"bootloader": 2, "kernel": 4}
    for bad in ("[]", '{"kernel": -1}', '{"kernel": "4"}', '{"kernel": true}', "{"):
        with pytest.raises(ConfigError):
            parse_counters(bad)


def test_deeply_nested_input_is_a_config_error():
    with pytest.raises(ConfigError):
        parse_counters("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError):
        parse_boot_chain("a = " + "[" * 100_000 + "]" * 100_000)
