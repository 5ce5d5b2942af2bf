"""Replies the edge makes itself (Envoy local replies, NGINX error pages), in the shape each
protocol's clients read:

- REST: google.rpc.Status JSON `{"code": <google.rpc.Code number>, "message": "..."}`, the
  same shape the transcoder gives a service's errors.
- Connect: the Connect error JSON `{"code": "<code name>", "message": "..."}`.
- gRPC and gRPC-Web: `grpc-status` / `grpc-message` (Envoy makes those itself for gRPC;
  its gRPC-Web filter turns a plain local reply into them; NGINX adds them here).

One table says, per HTTP status, which code it carries and what the message tells the
caller to do; mesh/envoy/ (local_reply_config), mesh/nginx.py (error pages) and
mesh/openapi.py (documented responses) read it. Imports nothing from the other generators.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.rpc import code_pb2

# Set on the request by the first edge filter when it is a Connect call (mesh/connect.py),
# before the Connect bridge rewrites it into gRPC: local replies read it to answer in
# Connect's error shape. A client-sent value is removed first.
PROTOCOL_HEADER = "x-shop-edge-protocol"

LOCAL_REPLY_BODY = "%LOCAL_REPLY_BODY%"


@dataclass(frozen=True)
class EdgeError:
    """One HTTP status the edge answers by itself."""

    http: int
    code: int  # google.rpc.Code
    # Envoy's message: %LOCAL_REPLY_BODY% is the filter's own text ("Jwt is missing",
    # "page_size: invalid value ...", "no healthy upstream").
    envoy: str
    # What the OpenAPI document says the status means.
    meaning: str
    # Connect's code when it is not the REST one's name: an unknown path or method is
    # `unimplemented` to a Connect client (what its HTTP 404 fallback also reads).
    connect_code: int | None = None

    @property
    def connect(self) -> str:
        """The Connect code name (google.rpc.Code name, lower case)."""
        return code_pb2.Code.Name(self.connect_code or self.code).lower()


ERRORS: tuple[EdgeError, ...] = (
    EdgeError(
        400,
        code_pb2.INVALID_ARGUMENT,
        f"invalid request: {LOCAL_REPLY_BODY} (the API schema is at /api/openapi.json)",
        "Invalid argument: a field breaks the schema's rules (the body names each one), or "
        "the body or query cannot be read",
    ),
    EdgeError(
        401,
        code_pb2.UNAUTHENTICATED,
        f"{LOCAL_REPLY_BODY}: send 'Authorization: Bearer <access_token>' from "
        "POST /api/v1/auth/login (POST /api/v1/auth/refresh renews an expired one)",
        "Unauthenticated: the access token is missing, invalid or expired, or the "
        "credentials were refused",
    ),
    EdgeError(
        403,
        code_pb2.PERMISSION_DENIED,
        f"permission denied ({LOCAL_REPLY_BODY}): this method needs a token with the admin role",
        "Permission denied: the token does not allow this call (another user's data, or "
        "an admin method)",
    ),
    EdgeError(
        404,
        code_pb2.NOT_FOUND,
        f"{LOCAL_REPLY_BODY} (the API is listed at /api/docs)",
        "Not found",
        code_pb2.UNIMPLEMENTED,
    ),
    EdgeError(
        405,
        code_pb2.UNIMPLEMENTED,
        LOCAL_REPLY_BODY,
        "Method not allowed",
    ),
    EdgeError(
        409,
        code_pb2.ABORTED,
        LOCAL_REPLY_BODY,
        "Conflict: already exists, or a concurrent change won",
    ),
    EdgeError(
        413,
        code_pb2.RESOURCE_EXHAUSTED,
        f"request body too large ({LOCAL_REPLY_BODY}): send at most 1 MiB",
        "Request body too large (over 1 MiB)",
    ),
    EdgeError(
        429,
        code_pb2.RESOURCE_EXHAUSTED,
        f"too many requests ({LOCAL_REPLY_BODY}): retry in a moment",
        "Rate limited: retry in a moment",
    ),
    EdgeError(
        500,
        code_pb2.INTERNAL,
        f"internal error ({LOCAL_REPLY_BODY})",
        "Internal error (the log has the trace id)",
    ),
    EdgeError(
        502,
        code_pb2.UNAVAILABLE,
        f"the API is not reachable ({LOCAL_REPLY_BODY}): retry in a moment",
        "Bad gateway: the API behind the gateway is not reachable, retry later",
    ),
    EdgeError(
        503,
        code_pb2.UNAVAILABLE,
        f"service unavailable ({LOCAL_REPLY_BODY}): retry in a moment",
        "Temporarily unavailable, retry later",
    ),
    EdgeError(
        504,
        code_pb2.DEADLINE_EXCEEDED,
        f"the service did not answer within the method's deadline ({LOCAL_REPLY_BODY}): "
        "retry in a moment",
        "Deadline exceeded: no answer within the method's timeout, retry later",
    ),
)

BY_STATUS = {e.http: e for e in ERRORS}
# Any other status >= 400 the edge might make.
FALLBACK = EdgeError(0, code_pb2.UNKNOWN, LOCAL_REPLY_BODY, "Error")

# The statuses that can answer any REST operation: the service's gRPC errors mapped by the
# transcoder (400, 401, 403, 404, 409, 500, 503, 504) and the edge's own replies (NGINX's
# body limit 413, both rate limits 429, NGINX's 502 when Envoy is down). 405 only answers
# a Connect GET on a method that changes state, never a REST path.
REST_STATUSES = tuple(e.http for e in ERRORS if e.http != 405)


# ------------------------------------------------------------------ Envoy local replies


def _status_is(http: int) -> dict:
    op = "EQ" if http else "GE"
    return {
        "status_code_filter": {
            "comparison": {
                "op": op,
                "value": {"default_value": http or 400, "runtime_key": f"edge_error.{http}"},
            }
        }
    }


# A Connect request carries the marker header (set before the bridge rewrites it to gRPC).
CONNECT_REQUEST = {"header_filter": {"header": {"name": PROTOCOL_HEADER, "present_match": True}}}

# A REST request: transcoded (the transcoder records the original method), or not gRPC at
# all. gRPC and gRPC-Web requests are left to Envoy's gRPC local replies (grpc-status),
# which a JSON body would only end up inside grpc-message.
REST_REQUEST = {
    "or_filter": {
        "filters": [
            {
                "header_filter": {
                    "header": {"name": "x-envoy-original-method", "present_match": True}
                }
            },
            {
                "header_filter": {
                    "header": {
                        "name": "content-type",
                        "string_match": {"prefix": "application/grpc"},
                        "invert_match": True,
                        "treat_missing_header_as_empty": True,
                    }
                }
            },
        ]
    }
}


def _mapper(err: EdgeError, protocol: dict, code: int | str) -> dict:
    return {
        "filter": {"and_filter": {"filters": [_status_is(err.http), protocol]}},
        "body_format_override": {
            "json_format": {"code": code, "message": err.envoy},
            "content_type": "application/json",
        },
    }


def local_reply_config() -> dict:
    """HttpConnectionManager.local_reply_config for the edge listener: Connect requests get
    the Connect error JSON, REST requests google.rpc.Status JSON, each with the HTTP status
    unchanged; the first matching mapper wins, so the status-specific ones come first."""
    mappers = []
    for err in (*ERRORS, FALLBACK):
        mappers.append(_mapper(err, CONNECT_REQUEST, err.connect))
        mappers.append(_mapper(err, REST_REQUEST, err.code))
    return {"mappers": mappers}


# ------------------------------------------------------------------ NGINX error pages


@dataclass(frozen=True)
class NginxError:
    """One status NGINX answers by itself on an API path, rendered for each protocol."""

    http: int
    rest: str  # JSON body for REST clients
    connect: str  # JSON body for Connect clients
    grpc_status: int
    grpc_message: str


def nginx_errors(max_body: str, rate: int, burst: int) -> list[NginxError]:
    """NGINX's own replies on /api: body limit, rate limit, Envoy unreachable or slow."""
    texts = {
        401: "the ops API needs an admin access token: send 'Authorization: Bearer "
        "<access_token>' from POST /api/v1/auth/login",
        403: "the ops API needs a token with the admin role",
        413: f"request body larger than {_size(max_body)}: send a smaller body",
        429: f"too many requests from this address (over {rate} per second, bursts of "
        f"{burst}): retry in a moment",
        500: "internal error at the gateway",
        502: "the API behind the gateway is not reachable: retry in a moment",
        503: "the gateway is overloaded: retry in a moment",
        504: "the API did not answer in time: retry in a moment",
    }
    out = []
    for http, text in texts.items():
        err = BY_STATUS[http]
        rest = json.dumps({"code": err.code, "message": text}, separators=(",", ":"))
        connect = json.dumps({"code": err.connect, "message": text}, separators=(",", ":"))
        out.append(
            NginxError(
                http,
                _nginx_quote(rest),
                _nginx_quote(connect),
                err.code,
                _nginx_quote(text),
            )
        )
    return out


def _size(nginx_size: str) -> str:
    units = {"k": "KiB", "m": "MiB", "g": "GiB"}
    unit = units.get(nginx_size[-1:].lower())
    return f"{nginx_size[:-1]} {unit}" if unit else f"{nginx_size} bytes"


def _nginx_quote(text: str) -> str:
    """An NGINX single-quoted string literal."""
    if "$" in text or "\n" in text:
        raise ValueError(f"not safe in an NGINX string: {text!r}")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
