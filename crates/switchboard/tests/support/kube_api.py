#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server, just enough for `helm template --dry-run=server`:
discovery of the kinds the chart renders, GET of one existing Secret (the one given as JSON in
argv[1], as an earlier install left it), 404 for anything else, and dry-run writes echoed
back. It lets crates/switchboard/tests/deploy.rs run helm's real `lookup` without a cluster.
Listens on a free loopback port, prints it, serves until killed (by PID, by the test)."""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

EXISTING = json.loads(sys.argv[1])
RESOURCES = {
    "/api/v1": ["Secret", "ConfigMap", "Service", "ServiceAccount", "Pod"],
    "/apis/apps/v1": ["StatefulSet"],
    "/apis/policy/v1": ["PodDisruptionBudget"],
    "/apis/monitoring.coreos.com/v1": ["ServiceMonitor", "PrometheusRule"],
}
GROUPS = ["apps", "policy", "monitoring.coreos.com"]


def existing_path(obj):
    m = obj["metadata"]
    return f"/api/v1/namespaces/{m['namespace']}/{obj['kind'].lower()}s/{m['name']}"


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "35", "gitVersion": "v1.35.0",
                                    "platform": "linux/amd64"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            versions = [{"groupVersion": f"{g}/v1", "version": "v1"} for g in GROUPS]
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [v], "preferredVersion": v}
                for g, v in zip(GROUPS, versions)]})
        if path in RESOURCES:
            version = path.removeprefix("/api/").removeprefix("/apis/")
            return self.reply(200, {"kind": "APIResourceList", "groupVersion": version,
                                    "resources": [
                                        {"name": k.lower() + "s", "singularName": k.lower(),
                                         "namespaced": True, "kind": k,
                                         "verbs": ["get", "list", "create", "update"]}
                                        for k in RESOURCES[path]]})
        if path == existing_path(EXISTING):
            return self.reply(200, EXISTING)
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "NotFound", "code": 404})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(201, json.loads(body or b"{}"))

    do_PUT = do_POST
    do_PATCH = do_POST

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
