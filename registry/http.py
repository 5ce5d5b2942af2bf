"""aiohttp routes speaking Confluent Schema Registry's REST API over `registry.service`.

Only request/response mapping lives here: query flags, JSON bodies, content types, and
rendering `RegistryError` as `{"error_code": ..., "message": ...}`. RED metrics of every
route wrap it (registry.metrics, GET /metrics).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from registry.errors import BadRequest, RegistryError, StoreError
from registry.metrics import METRICS_PATH, HttpMetrics
from registry.service import Registry

log = logging.getLogger("registry.http")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
REGISTRY_KEY = web.AppKey("registry", Registry)
METRICS_KEY = web.AppKey("metrics", HttpMetrics)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode(),
        status=status,
        content_type=CONTENT_TYPE,
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"error_code": code, "message": message}, status)


def _flag(request: web.Request, name: str) -> bool:
    # confluent-kafka sends Python booleans formatted as "True"/"False".
    return request.query.get(name, "false").strip().lower() == "true"


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Invalid JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


def _schema_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise RegistryError("Schema id must be an integer", status=404, code=40403) from None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        return _error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.status, f"HTTP {exc.status} {exc.reason}")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        log.exception("store error on %s %s", request.method, request.path)
        err = StoreError(f"Error in the backend data store: {type(exc).__name__}")
        return _error(err.status, err.code, err.message)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, 50001, "Internal server error")


def routes(reg: Registry) -> web.RouteTableDef:
    r = web.RouteTableDef()

    @r.get("/")
    async def root(_: web.Request) -> web.Response:
        return _json({})

    @r.get("/subjects")
    async def list_subjects(req: web.Request) -> web.Response:
        return _json(
            await reg.subjects(
                deleted=_flag(req, "deleted"),
                deleted_only=_flag(req, "deletedOnly") or _flag(req, "deleted_only"),
                prefix=req.query.get("subjectPrefix", ""),
            )
        )

    @r.post("/subjects/{subject}/versions")
    async def register(req: web.Request) -> web.Response:
        result = await reg.register(
            req.match_info["subject"], await _body(req), normalize=_flag(req, "normalize")
        )
        return _json({"id": result["id"]})

    @r.post("/subjects/{subject}")
    async def lookup(req: web.Request) -> web.Response:
        return _json(
            await reg.lookup(
                req.match_info["subject"],
                await _body(req),
                normalize=_flag(req, "normalize"),
                deleted=_flag(req, "deleted"),
            )
        )

    @r.get("/subjects/{subject}/versions")
    async def list_versions(req: web.Request) -> web.Response:
        return _json(
            await reg.versions(
                req.match_info["subject"],
                deleted=_flag(req, "deleted"),
                deleted_only=_flag(req, "deletedOnly") or _flag(req, "deleted_only"),
            )
        )

    @r.get("/subjects/{subject}/versions/{version}")
    async def get_version(req: web.Request) -> web.Response:
        return _json(
            await reg.version(
                req.match_info["subject"], req.match_info["version"], deleted=_flag(req, "deleted")
            )
        )

    @r.get("/subjects/{subject}/versions/{version}/schema")
    async def get_version_schema(req: web.Request) -> web.Response:
        found = await reg.version(
            req.match_info["subject"], req.match_info["version"], deleted=_flag(req, "deleted")
        )
        return web.Response(text=found["schema"], content_type=CONTENT_TYPE)

    @r.get("/subjects/{subject}/versions/{version}/referencedby")
    async def referenced_by(req: web.Request) -> web.Response:
        return _json(await reg.referenced_by(req.match_info["subject"], req.match_info["version"]))

    @r.delete("/subjects/{subject}")
    async def delete_subject(req: web.Request) -> web.Response:
        return _json(
            await reg.delete_subject(req.match_info["subject"], permanent=_flag(req, "permanent"))
        )

    @r.delete("/subjects/{subject}/versions/{version}")
    async def delete_version(req: web.Request) -> web.Response:
        return _json(
            await reg.delete_version(
                req.match_info["subject"],
                req.match_info["version"],
                permanent=_flag(req, "permanent"),
            )
        )

    @r.get("/schemas/types")
    async def schema_types(_: web.Request) -> web.Response:
        return _json(["AVRO"])

    @r.get("/schemas/ids/{id}")
    async def schema_by_id(req: web.Request) -> web.Response:
        return _json(await reg.schema_by_id(_schema_id(req), req.query.get("subject")))

    @r.get("/schemas/ids/{id}/schema")
    async def raw_schema_by_id(req: web.Request) -> web.Response:
        found = await reg.schema_by_id(_schema_id(req), req.query.get("subject"))
        return web.Response(text=found["schema"], content_type=CONTENT_TYPE)

    @r.get("/schemas/ids/{id}/versions")
    async def schema_versions(req: web.Request) -> web.Response:
        return _json(
            await reg.schema_versions(
                _schema_id(req), deleted=_flag(req, "deleted"), subject=req.query.get("subject")
            )
        )

    @r.get("/schemas/ids/{id}/subjects")
    async def schema_subjects(req: web.Request) -> web.Response:
        return _json(
            await reg.schema_subjects(
                _schema_id(req), deleted=_flag(req, "deleted"), subject=req.query.get("subject")
            )
        )

    @r.get("/schemas/guids/{guid}")
    async def schema_by_guid(req: web.Request) -> web.Response:
        return _json(await reg.schema_by_guid(req.match_info["guid"]))

    @r.post("/compatibility/subjects/{subject}/versions/{version}")
    async def compat_version(req: web.Request) -> web.Response:
        return _json(
            await reg.test_compatibility(
                req.match_info["subject"],
                req.match_info["version"],
                await _body(req),
                normalize=_flag(req, "normalize"),
                verbose=_flag(req, "verbose"),
            )
        )

    @r.post("/compatibility/subjects/{subject}/versions")
    async def compat_all(req: web.Request) -> web.Response:
        return _json(
            await reg.test_compatibility(
                req.match_info["subject"],
                None,
                await _body(req),
                normalize=_flag(req, "normalize"),
                verbose=_flag(req, "verbose"),
            )
        )

    @r.get("/config")
    async def get_config(_: web.Request) -> web.Response:
        return _json(await reg.get_config(None))

    @r.put("/config")
    async def put_config(req: web.Request) -> web.Response:
        return _json(await reg.set_config(None, await _body(req)))

    @r.delete("/config")
    async def delete_config(_: web.Request) -> web.Response:
        return _json(await reg.delete_config(None))

    @r.get("/config/{subject}")
    async def get_subject_config(req: web.Request) -> web.Response:
        return _json(
            await reg.get_config(
                req.match_info["subject"], default_to_global=_flag(req, "defaultToGlobal")
            )
        )

    @r.put("/config/{subject}")
    async def put_subject_config(req: web.Request) -> web.Response:
        return _json(await reg.set_config(req.match_info["subject"], await _body(req)))

    @r.delete("/config/{subject}")
    async def delete_subject_config(req: web.Request) -> web.Response:
        return _json(await reg.delete_config(req.match_info["subject"]))

    @r.get("/mode")
    async def get_mode(_: web.Request) -> web.Response:
        return _json(await reg.get_mode(None))

    @r.put("/mode")
    async def put_mode(req: web.Request) -> web.Response:
        return _json(await reg.set_mode(None, await _body(req), force=_flag(req, "force")))

    @r.get("/mode/{subject}")
    async def get_subject_mode(req: web.Request) -> web.Response:
        return _json(
            await reg.get_mode(
                req.match_info["subject"], default_to_global=_flag(req, "defaultToGlobal")
            )
        )

    @r.put("/mode/{subject}")
    async def put_subject_mode(req: web.Request) -> web.Response:
        return _json(
            await reg.set_mode(
                req.match_info["subject"], await _body(req), force=_flag(req, "force")
            )
        )

    @r.delete("/mode/{subject}")
    async def delete_subject_mode(req: web.Request) -> web.Response:
        return _json(await reg.delete_mode(req.match_info["subject"]))

    return r


def make_app(reg: Registry, metrics: HttpMetrics | None = None) -> web.Application:
    """App factory: the store is opened by the caller (cli.serve) and closed on cleanup.
    GET /metrics serves the API's RED figures (registry.metrics) on the same port."""
    metrics = metrics or HttpMetrics()
    app = web.Application(middlewares=[metrics.middleware(), errors_middleware])
    app[REGISTRY_KEY] = reg
    app[METRICS_KEY] = metrics
    app.add_routes(routes(reg))
    app.router.add_get(METRICS_PATH, metrics.handle)

    async def close_store(_: web.Application) -> None:
        await reg.store.close()

    app.on_cleanup.append(close_store)
    return app
