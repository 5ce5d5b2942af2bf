"""The system's topology: schemas/topology.yaml, loaded and checked (manifest.py), and what
`make gen` generates from it (generate.py: the topic and port constants the services import,
docker-compose.yml, the Kubernetes workloads and policies, docs/topology.md).

Imported by the generators, the local stack and tests; never by a service (services import
the generated constants in gen/python/shop/topology.py, so images need no YAML).
"""

from topology.manifest import MANIFEST, ManifestError, Service, Topology, load, topology

__all__ = ["MANIFEST", "ManifestError", "Service", "Topology", "load", "topology"]
