"""Firmware signing and staged secure boot: signed manifests (CMS SignedData around a JSON manifest),
their verification against a trust root or a pinned key, and a simulated boot chain that verifies each
stage with the key the previous stage pinned.

Modules: ``manifest`` (the manifest and its JSON), ``envelope`` (CMS signing, signature verification,
the algorithm policy), ``verify`` (a manifest against an image, a trust root or a pin, a minimum
version), ``boot`` (the boot-chain layout and the staged boot), ``checks`` (rule → finding).
"""
