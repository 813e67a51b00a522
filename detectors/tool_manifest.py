"""Signed tool manifests: a tool server's publisher states each tool's description, schema and
scope, signs the statement with Ed25519, and the monitor checks what agents were actually
shown against it.

A manifest is signed over its canonical JSON (sorted keys, no spaces, UTF-8), so any change to
a description, schema or scope breaks the signature. Keys are identified by the first 16 hex
digits of the SHA-256 of the raw public key; only keys in the trusted set count.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from detectors.base import MatrixDetector
from schemas.events import LLMEvent
from schemas.tools import description_hash

Scope = Literal["read", "write", "network", "payment", "code_execution"]
MISMATCH = "tool_manifest_mismatch"
UNSIGNED = "unsigned_tool"


class ToolEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    input_schema: dict[str, Any] = {}
    scope: list[Scope] = []


class ToolManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str
    version: str
    tools: list[ToolEntry]

    def canonical(self) -> bytes:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class SignedManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest: ToolManifest
    key_id: str
    signature: str  # base64


class ManifestError(ValueError):
    """A manifest that must not be trusted, and why."""


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate_key(out_dir: Path, name: str) -> tuple[Path, Path]:
    """A new Ed25519 key pair as PEM files: `<name>.key` (private, mode 0600) and `<name>.pub`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    private_path.write_bytes(
        private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    )  # fmt: skip
    private_path.chmod(0o600)
    public_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def sign(manifest: ToolManifest, private_pem: bytes) -> SignedManifest:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ManifestError("the signing key is not an Ed25519 private key")
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signature = base64.b64encode(private.sign(manifest.canonical())).decode()
    return SignedManifest(manifest=manifest, key_id=key_id(raw), signature=signature)


def trusted_keys(public_pems: Sequence[bytes]) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys: dict[str, Any] = {}
    for pem in public_pems:
        public = serialization.load_pem_public_key(pem)
        if not isinstance(public, Ed25519PublicKey):
            raise ManifestError("a trusted key is not an Ed25519 public key")
        keys[key_id(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))] = public
    return keys


def verify(signed: SignedManifest, keys: dict[str, Any]) -> ToolManifest:
    """The manifest, if a trusted key signed exactly these bytes; else ManifestError."""
    from cryptography.exceptions import InvalidSignature

    public = keys.get(signed.key_id)
    if public is None:
        raise ManifestError(f"signed by key {signed.key_id}, which is not trusted")
    try:
        public.verify(base64.b64decode(signed.signature), signed.manifest.canonical())
    except (InvalidSignature, ValueError) as exc:
        raise ManifestError("signature does not match the manifest: it was changed after signing") from exc
    return signed.manifest


class ManifestCheck(MatrixDetector):
    """Tier-1 detector: tool definitions against their verified manifests.

    A description that differs from the signed one scores 1.0 (`tool_manifest_mismatch`, high
    severity by the default policy); with `require_signatures`, a tool no trusted manifest
    covers scores 0.6 (`unsigned_tool`)."""

    name = "tool-manifest"
    version = "manifest-1"
    threshold = 0.5
    categories = (MISMATCH, UNSIGNED)
    thresholds = (threshold, threshold)

    def __init__(self, manifests: Sequence[ToolManifest], *, require_signatures: bool = False) -> None:
        self.expected = {(m.server, t.name): description_hash(t.description) for m in manifests for t in m.tools}
        # Spans that do not name the server: a tool name only one manifest holds still identifies it.
        by_name: dict[str, list[str]] = {}
        for (_, name), digest in self.expected.items():
            by_name.setdefault(name, []).append(digest)
        self.by_name = {name: digests[0] for name, digests in by_name.items() if len(digests) == 1}
        self.require_signatures = require_signatures

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        matrix = np.zeros((len(events), 2), dtype=np.float64)
        for i, event in enumerate(events):
            for tool in event.tool_definitions:
                if tool.server is not None:
                    expected = self.expected.get((tool.server, tool.name))
                else:
                    expected = self.by_name.get(tool.name)
                if expected is None:
                    matrix[i, 1] = 0.6 if self.require_signatures else matrix[i, 1]
                elif expected != description_hash(tool.description):
                    matrix[i, 0] = 1.0
        return matrix


def load_verified(directory: Path, keys_dir: Path) -> list[SignedManifest]:
    """Every `*.signed.json` in `directory` verified against the `*.pub` keys in `keys_dir`;
    one that fails verification stops the load (a worker must not start trusting it)."""
    keys = trusted_keys([p.read_bytes() for p in sorted(keys_dir.glob("*.pub"))])
    manifests = []
    for path in sorted(directory.glob("*.signed.json")):
        signed = SignedManifest.model_validate_json(path.read_text())
        try:
            verify(signed, keys)
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc}") from exc
        manifests.append(signed)
    return manifests


def declared_tools(signed: Sequence[SignedManifest]) -> dict[tuple[str, str], tuple[str, str]]:
    """(server, tool) -> (declared scope, signer key id), for the tool registry."""
    return {
        (s.manifest.server, tool.name): (",".join(tool.scope), s.key_id) for s in signed for tool in s.manifest.tools
    }
