"""Shopmesh shared service runtime: config, server bootstrap (health, reflection, metrics,
JSON logs, validation, error mapping, auth hook, graceful shutdown), the PostgreSQL
read/write router and unit of work, and schema method policies.

Import from the submodules: services.runtime.{config, errors, validation, policy, context,
server, db, metrics, logs, health, migrations, grpc}.
"""
