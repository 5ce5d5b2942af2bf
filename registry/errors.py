"""Registry errors carrying Confluent's HTTP status and `error_code` (its REST API contract).

Imports only the stdlib: the service raises these, `http` renders them as
`{"error_code": ..., "message": ...}`.
"""

from __future__ import annotations


class RegistryError(Exception):
    """An error with Confluent's HTTP status and error code."""

    status: int = 500
    code: int = 50001

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class SubjectNotFound(RegistryError):
    status, code = 404, 40401

    def __init__(self, subject: str):
        super().__init__(f"Subject '{subject}' not found.")


class VersionNotFound(RegistryError):
    status, code = 404, 40402

    def __init__(self, subject: str, version: int | str):
        super().__init__(f"Version {version} not found.")


class SchemaNotFound(RegistryError):
    status, code = 404, 40403

    def __init__(self, message: str = "Schema not found"):
        super().__init__(message)


class SubjectSoftDeleted(RegistryError):
    status, code = 404, 40404

    def __init__(self, subject: str):
        super().__init__(
            f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"
        )


class SubjectNotSoftDeleted(RegistryError):
    status, code = 404, 40405

    def __init__(self, subject: str):
        super().__init__(
            f"Subject '{subject}' was not deleted first before being permanently deleted"
        )


class VersionSoftDeleted(RegistryError):
    status, code = 404, 40406

    def __init__(self, subject: str, version: int):
        super().__init__(
            f"Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete"
            " permanently"
        )


class VersionNotSoftDeleted(RegistryError):
    status, code = 404, 40407

    def __init__(self, subject: str, version: int):
        super().__init__(
            f"Subject '{subject}' Version {version} was not deleted first before being"
            " permanently deleted"
        )


class SubjectConfigNotFound(RegistryError):
    status, code = 404, 40408

    def __init__(self, subject: str):
        super().__init__(
            f"Subject '{subject}' does not have subject-level compatibility configured"
        )


class SubjectModeNotFound(RegistryError):
    status, code = 404, 40409

    def __init__(self, subject: str):
        super().__init__(f"Subject '{subject}' does not have subject-level mode configured")


class IncompatibleSchema(RegistryError):
    status, code = 409, 409

    def __init__(self, message: str, messages: list[str] | None = None):
        super().__init__(message)
        self.messages = messages or []


class InvalidSchema(RegistryError):
    status, code = 422, 42201


class InvalidVersion(RegistryError):
    status, code = 422, 42202

    def __init__(self, version: str):
        super().__init__(
            f"The specified version '{version}' is not a valid version id. Allowed values are"
            ' between [1, 2^31-1] and the string "latest"'
        )


class InvalidCompatibilityLevel(RegistryError):
    status, code = 422, 42203

    def __init__(self, level: object):
        super().__init__(
            f"Invalid compatibility level: {level}. Valid values are none, backward, forward,"
            " full, backward_transitive, forward_transitive, and full_transitive"
        )


class InvalidMode(RegistryError):
    status, code = 422, 42204

    def __init__(self, mode: object):
        super().__init__(f"Invalid mode: {mode}. Valid values are READWRITE, READONLY and IMPORT")


class OperationNotPermitted(RegistryError):
    status, code = 422, 42205


class ReferenceExists(RegistryError):
    status, code = 422, 42206


class BadRequest(RegistryError):
    """Unparseable or ill-typed request body (Confluent answers HTTP 400, error_code 400)."""

    status, code = 400, 400


class StoreError(RegistryError):
    status, code = 500, 50001
