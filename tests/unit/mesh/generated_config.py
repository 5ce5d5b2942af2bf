"""Where the mesh generator's committed output is, and how the tests read routes out of the
Envoy config.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "mesh" / "out"
NGINX = Path("/usr/sbin/nginx")


def _listener(cfg: dict, name: str) -> dict:
    (lst,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == name]
    return lst["filter_chains"][0]["filters"][0]["typed_config"]


def _routes(cfg: dict, name: str) -> dict[str, dict]:
    vhost = _listener(cfg, name)["route_config"]["virtual_hosts"][0]
    by_path: dict[str, dict] = {}
    for r in vhost["routes"]:
        if r["name"].startswith("get."):
            continue  # Connect GET guards (mesh/connect.py): only a Connect GET meets them
        key = r["match"].get("path") or r["match"].get("prefix")
        by_path.setdefault(key, r)  # first match wins, as in Envoy
    return by_path
