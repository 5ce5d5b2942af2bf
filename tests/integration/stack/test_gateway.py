"""Envoy, NGINX and Prometheus started by the stack runner."""

import re
import shutil
import uuid

import httpx
import pytest

from stack.frontend import DIST as FRONTEND_DIST

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def edge(stack):
    return stack.require("nginx", "prometheus")


def test_envoy_admin_answers(edge):
    resp = httpx.get(f"{edge.envoy_admin_url}/ready", timeout=5)
    assert (resp.status_code, resp.text.strip()) == (200, "LIVE")
    stats = httpx.get(f"{edge.envoy_admin_url}/stats/prometheus", timeout=5)
    assert re.search(r"^envoy_server_live(\{\})? 1$", stats.text, re.M)


def test_nginx_serves_the_frontend_or_placeholder(edge):
    resp = httpx.get(f"{edge.nginx_url}/", timeout=5)
    assert resp.status_code == 200
    assert "<title>" in resp.text.lower() or "<!doctype html>" in resp.text.lower()


def test_nginx_serves_frontend_dist_as_it_is_now(edge):
    """NGINX may start before the storefront is built (CI runs gateway tests first): it
    must serve what frontend/dist holds when asked, not what was there at its start."""
    created = not FRONTEND_DIST.exists()
    FRONTEND_DIST.mkdir(parents=True, exist_ok=True)
    probe = FRONTEND_DIST / f"probe-{uuid.uuid4().hex}.txt"
    try:
        probe.write_text("fresh build\n")
        resp = httpx.get(f"{edge.nginx_url}/{probe.name}", timeout=5)
        assert (resp.status_code, resp.text) == (200, "fresh build\n")
    finally:
        probe.unlink(missing_ok=True)
        if created:
            shutil.rmtree(FRONTEND_DIST, ignore_errors=True)


def test_nginx_proxies_api_to_envoy(edge):
    before = _envoy_requests(edge)
    resp = httpx.get(f"{edge.nginx_url}/api/v1/products", timeout=5)
    assert resp.status_code != 502, "NGINX could not reach Envoy"
    assert _envoy_requests(edge) > before, "request did not pass through Envoy"


def _envoy_requests(edge) -> int:
    text = httpx.get(f"{edge.envoy_admin_url}/stats?filter=downstream_rq_total$", timeout=5).text
    return sum(
        int(line.rsplit(":", 1)[1])
        for line in text.splitlines()
        if line.startswith("http.") and "admin" not in line
    )


def test_prometheus_is_ready(edge):
    assert httpx.get(f"{edge.prometheus_url}/-/ready", timeout=5).status_code == 200
