"""Shopmesh schema registry: a Confluent-Schema-Registry-compatible REST service and CLI.

Modules: `errors` (Confluent error codes), `avro_schema` (parse/canonicalize), `compatibility`
(Avro reader/writer rules per level), `ports` (store protocol), `service` (use cases),
`store_pg` / `store_memory` (adapters), `http` (aiohttp routes), `catalog` (schema files),
`cli` (`python -m registry`).
"""
