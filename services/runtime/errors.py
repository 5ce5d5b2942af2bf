"""Domain error base classes, and the ONE place that maps them to gRPC statuses.

Domain code (domain.py, service.py) subclasses these and must not import grpclib; only
`to_grpc_error` (used by the server's call wrapper) knows about grpclib. Anything that is
not a domain error becomes INTERNAL carrying only the trace id; the stack trace goes to the
log, never to the client.
"""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error a use case may raise on purpose. `message` goes to the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The named entity does not exist (NOT_FOUND)."""


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: `field` is a path such as `lines[0].quantity`."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class InvalidArgument(DomainError):
    """The request is malformed (INVALID_ARGUMENT); names the field(s) at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.violations: tuple[FieldViolation, ...] = (FieldViolation(field, message),)
        super().__init__(f"{field}: {message}")
        self.field = field

    @classmethod
    def many(cls, violations: list[FieldViolation]) -> InvalidArgument:
        """All violations of one request in one error (what schema validation reports)."""
        err = cls(violations[0].field, violations[0].description)
        err.violations = tuple(violations)
        err.message = "; ".join(str(v) for v in violations)
        err.args = (err.message,)
        return err


class AlreadyExists(DomainError):
    """Creating something that exists, e.g. a registered email (ALREADY_EXISTS)."""


class Conflict(DomainError):
    """Concurrent modification or a state clash worth retrying (ABORTED).

    Unlike AlreadyExists, a retry after re-reading may succeed, which is what ABORTED
    tells a client."""


class FailedPrecondition(DomainError):
    """The system is not in a state that allows this, e.g. not enough stock
    (FAILED_PRECONDITION: do not retry until the state changes)."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this (PERMISSION_DENIED)."""


class Unauthenticated(DomainError):
    """No valid credentials (UNAUTHENTICATED)."""


class Unavailable(DomainError):
    """A dependency is down or the server is draining: safe to retry (UNAVAILABLE)."""


# ---------------------------------------------------------------- the mapping (grpclib only here)


MAX_VIOLATIONS = 20
MAX_MESSAGE = 1000


def to_grpc_error(exc: BaseException, trace_id: str) -> tuple[object, bool]:
    """Map any exception to (GRPCError, expected). `expected` is False for internal errors,
    which the caller logs with their stack trace."""
    from google.rpc import error_details_pb2
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    if isinstance(exc, GRPCError):
        return exc, True
    statuses: list[tuple[type[DomainError], Status]] = [
        (NotFound, Status.NOT_FOUND),
        (InvalidArgument, Status.INVALID_ARGUMENT),
        (AlreadyExists, Status.ALREADY_EXISTS),
        (Conflict, Status.ABORTED),
        (FailedPrecondition, Status.FAILED_PRECONDITION),
        (PermissionDenied, Status.PERMISSION_DENIED),
        (Unauthenticated, Status.UNAUTHENTICATED),
        (Unavailable, Status.UNAVAILABLE),
    ]
    for cls, status in statuses:
        if isinstance(exc, cls):
            details = None
            message = exc.message
            if isinstance(exc, InvalidArgument):
                # google.rpc.BadRequest in grpc-status-details-bin: clients get the
                # violations as data, not only in the message text. Both travel in HTTP
                # headers, so a request with hundreds of bad fields is answered with the
                # first MAX_VIOLATIONS, and the text is cut to MAX_MESSAGE characters.
                shown = exc.violations[:MAX_VIOLATIONS]
                details = [
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field=v.field, description=v.description[:MAX_MESSAGE]
                            )
                            for v in shown
                        ]
                    )
                ]
                if len(exc.violations) > len(shown) or len(message) > MAX_MESSAGE:
                    message = message[:MAX_MESSAGE] + f" (and more: {len(exc.violations)} in all)"
            return GRPCError(status, message, details), True
    return GRPCError(Status.INTERNAL, f"internal error (trace id {trace_id})"), False
