"""`oodwatch tools keygen|sign|verify`: signed tool manifests for tool-server publishers and the
operators who trust them; `oodwatch tools list`: the registry of tools agents were shown."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.settings import Settings


def cmd_keygen(settings: Settings, args: argparse.Namespace) -> int:
    from detectors.tool_manifest import generate_key

    private, public = generate_key(args.out, args.name)
    print(f"private key {private} (keep it secret), public key {public} (give it to operators)")
    return 0


def cmd_sign(settings: Settings, args: argparse.Namespace) -> int:
    from detectors.tool_manifest import ToolManifest, sign

    signed = sign(ToolManifest.model_validate_json(args.manifest.read_text()), args.key.read_bytes())
    out = args.out or args.manifest.with_name(args.manifest.name.removesuffix(".json") + ".signed.json")
    out.write_text(signed.model_dump_json(indent=1))
    print(f"signed {len(signed.manifest.tools)} tool(s) of {signed.manifest.server} with key {signed.key_id}: {out}")
    return 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from detectors.tool_manifest import ManifestError, SignedManifest, trusted_keys, verify

    keys = trusted_keys([p.read_bytes() for p in sorted(args.keys.glob("*.pub"))])
    try:
        manifest = verify(SignedManifest.model_validate_json(args.signed.read_text()), keys)
    except ManifestError as exc:
        print(f"NOT TRUSTED: {args.signed}: {exc}", file=sys.stderr)
        return 1
    print(f"trusted: {manifest.server} {manifest.version}, {len(manifest.tools)} tool(s)")
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.cli.queue import _client, _table

    rows = _client(settings).tools(service=args.service, changed_only=args.changed, limit=args.limit)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for row in rows:
        row["state"] = "RUG PULL" if row["changed"] else "pinned"
    _table(
        rows,
        [("STATE", "state", 8), ("SERVICE", "service", 16), ("SERVER", "server", 16), ("TOOL", "tool", 20),
         ("SCOPE", "scope", 14), ("SIGNER", "signer", 16), ("FIRST SEEN", "first_seen", 19),
         ("LAST SEEN", "last_seen", 19), ("DESCRIPTION", "description", 40)],
    )  # fmt: skip
    changed = sum(1 for row in rows if row["changed"])
    print(f"\n{len(rows)} tool(s), {changed} with a description that differs from its pin")
    return 0


def add_commands(sub: Any) -> None:
    tools = sub.add_parser("tools", help="the tool registry and signed tool manifests").add_subparsers(
        dest="tools_command", required=True
    )
    lister = tools.add_parser("list", help="tools agents were shown, rug pulls first (through the triage API)")
    lister.add_argument("--service")
    lister.add_argument("--changed", action="store_true", help="only tools whose description differs from the pin")
    lister.add_argument("--limit", type=int, default=200)
    lister.add_argument("--json", action="store_true")
    lister.set_defaults(func=cmd_list)
    keygen = tools.add_parser("keygen", help="a new Ed25519 key pair")
    keygen.add_argument("--out", type=Path, required=True)
    keygen.add_argument("--name", default="publisher")
    keygen.set_defaults(func=cmd_keygen)
    signer = tools.add_parser("sign", help="sign a manifest (server, version, tools with description/schema/scope)")
    signer.add_argument("manifest", type=Path)
    signer.add_argument("--key", type=Path, required=True, help="the publisher's private key (PEM)")
    signer.add_argument("--out", type=Path)
    signer.set_defaults(func=cmd_sign)
    verifier = tools.add_parser("verify", help="check a signed manifest against trusted public keys (exit 1 if not)")
    verifier.add_argument("signed", type=Path)
    verifier.add_argument("--keys", type=Path, required=True, help="a directory of trusted *.pub keys")
    verifier.set_defaults(func=cmd_verify)
