"""`python -m registry` / `shopmesh-registry`: serve, register, check, check-against-git.

- serve:              the REST service on REGISTRY_HOST:REGISTRY_PORT (127.0.0.1:8085), stored
                      in PostgreSQL (REGISTRY_DATABASE_URL) or, with --memory, in memory.
- register:           register every subject from schemas/avro with a running registry.
- check:              ask a running registry whether each subject's schema is compatible,
                      without registering; exits 1 naming the subject and why.
- check-against-git:  CI/lint gate with no server: a throwaway in-memory registry is loaded
                      with the schemas at --base (git), then the working tree is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from urllib.parse import quote

from registry.catalog import SubjectSchema, load_dir, load_git
from registry.compatibility import Level
from registry.config import RegistryConfig
from registry.errors import RegistryError
from registry.service import Registry
from registry.settings import parse_level


def _serve(cfg: RegistryConfig, memory: bool) -> int:
    from aiohttp import web

    from registry.http import make_app
    from registry.store_memory import MemoryStore
    from registry.store_pg import PostgresStore

    async def build() -> web.Application:
        store = (
            MemoryStore()
            if memory
            else await PostgresStore.connect(cfg.database_url, schema=cfg.database_schema)
        )
        return make_app(Registry(store))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    where = "memory" if memory else cfg.database_url.rsplit("@", 1)[-1]
    print(f"registry listening on http://{cfg.host}:{cfg.port} (store: {where})", flush=True)
    web.run_app(build(), host=cfg.host, port=cfg.port, access_log=None, print=None)
    return 0


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, object]:
    import httpx

    resp = httpx.request(
        method,
        url,
        json=body,
        timeout=30,
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    try:
        return resp.status_code, resp.json()
    except json.JSONDecodeError:
        return resp.status_code, resp.text


def _register(cfg: RegistryConfig, subjects: Sequence[SubjectSchema]) -> int:
    failed = 0
    for s in subjects:
        status, out = _http(
            "POST", f"{cfg.url}/subjects/{quote(s.subject, safe='')}/versions", {"schema": s.schema}
        )
        if status == 200 and isinstance(out, dict):
            print(f"registered {s.subject} id={out['id']}")
        else:
            failed += 1
            print(f"FAILED {s.subject}: HTTP {status} {out}", file=sys.stderr)
    return 1 if failed else 0


def _why(out: object) -> str:
    """One line from a verbose compatibility answer. Confluent's messages repeat the whole
    old schema (`{oldSchema: '...'}`), which buries the reason, so that one is left out."""
    if isinstance(out, dict):
        messages = out.get("messages")
        if isinstance(messages, list) and messages:
            return "; ".join(str(m) for m in messages if not str(m).startswith("{oldSchema:"))
        if "message" in out:
            return f"{out.get('error_code', '')} {out['message']}".strip()
    return str(out)


def _check(cfg: RegistryConfig, subjects: Sequence[SubjectSchema]) -> int:
    failed = 0
    for s in subjects:
        url = f"{cfg.url}/compatibility/subjects/{quote(s.subject, safe='')}/versions?verbose=true"
        status, out = _http("POST", url, {"schema": s.schema})
        if status == 200 and isinstance(out, dict) and out.get("is_compatible"):
            print(f"ok {s.subject}")
        else:
            failed += 1
            print(f"INCOMPATIBLE {s.subject}: {_why(out)}", file=sys.stderr)
    return 1 if failed else 0


async def check_against(
    base: Sequence[SubjectSchema], current: Sequence[SubjectSchema], level: Level
) -> list[str]:
    """Problems of `current` against a fresh in-memory registry holding `base`."""
    from registry.store_memory import MemoryStore

    reg = Registry(MemoryStore())
    await reg.set_config(None, {"compatibility": level.value})
    problems = []
    for s in base:
        try:
            await reg.register(s.subject, {"schema": s.schema})
        except RegistryError as exc:  # a broken base is not this change's fault
            print(f"warning: base schema {s.subject} not registrable: {exc.message}")
    for s in current:
        try:
            result = await reg.test_compatibility(
                s.subject, None, {"schema": s.schema}, verbose=True
            )
        except RegistryError as exc:
            problems.append(f"{s.subject}: {exc.message}")
            continue
        if not result["is_compatible"]:
            problems.append(f"{s.subject}: " + " ".join(result["messages"]))
    return problems


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def default_base() -> str:
    """The last landed revision, chosen like tools/lint.py's buf breaking base.

    SHOPMESH_BREAKING_BASE wins; else the merge base with origin/main when this checkout is
    ahead of it; else HEAD~1 (CI runs on a clean clone whose HEAD is the submission).
    """
    explicit = os.environ.get("SHOPMESH_BREAKING_BASE")
    if explicit:
        return explicit
    head = _git("rev-parse", "HEAD")
    upstream = _git("merge-base", "HEAD", "origin/main")
    if upstream and upstream != head:
        return upstream
    return _git("rev-parse", "HEAD~1") or "HEAD"


def _check_against_git(cfg: RegistryConfig, base_rev: str | None, level: Level) -> int:
    base_rev = base_rev or default_base()
    try:
        current = load_dir(cfg.schemas_dir)
    except ValueError as exc:
        print(f"schema check: {exc}", file=sys.stderr)
        return 1
    base = load_git(base_rev, cfg.schemas_dir)
    if not base:
        print(
            f"schema check: {base_rev} has no schemas under {cfg.schemas_dir}; "
            "checking only that the working tree parses"
        )
    problems = asyncio.run(check_against(base, current, level))
    for p in problems:
        print(f"INCOMPATIBLE {p}", file=sys.stderr)
    if not problems:
        print(f"schema check: {len(current)} subjects {level.value}-compatible with {base_rev}")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    cfg = RegistryConfig.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m registry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=cfg.url, help="registry URL for register/check")
    parser.add_argument("--schemas", default=cfg.schemas_dir, help="schema directory")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the REST service")
    serve.add_argument("--memory", action="store_true", help="in-memory store (no PostgreSQL)")
    serve.add_argument("--port", type=int, default=cfg.port)
    sub.add_parser("register", help="register schemas/avro with a running registry")
    sub.add_parser("check", help="check schemas/avro against a running registry")
    git = sub.add_parser("check-against-git", help="check against the schemas at a git revision")
    git.add_argument(
        "--base", default=None, help="git revision (default: last landed, see default_base)"
    )
    git.add_argument("--level", default="BACKWARD", help="compatibility level (default BACKWARD)")
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(
        cfg,
        port=getattr(args, "port", cfg.port),
        url=args.url.rstrip("/"),
        schemas_dir=args.schemas,
    )

    if args.command == "serve":
        return _serve(cfg, args.memory)
    if args.command == "check-against-git":
        try:
            level = parse_level(args.level)
        except RegistryError as exc:
            parser.error(exc.message)
        return _check_against_git(cfg, args.base, level)
    try:
        subjects = load_dir(cfg.schemas_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not subjects:
        print(f"no subjects found under {cfg.schemas_dir} (missing topics.json?)")
        return 0
    return _register(cfg, subjects) if args.command == "register" else _check(cfg, subjects)
