"""A tiny synchronous HTTPS client with the admin's credentials, for asserting raw API behaviour."""
from __future__ import annotations

import base64
import http.client
import json
import ssl
import tempfile
from pathlib import Path

import yaml


class Api:
    def __init__(self, kubeconfig: Path):
        doc = yaml.safe_load(kubeconfig.read_text())
        cluster = doc["clusters"][0]["cluster"]
        user = doc["users"][0]["user"]
        self.host, port = cluster["server"].removeprefix("https://").rsplit(":", 1)
        self.port = int(port)
        self.ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        self._tmp = tempfile.TemporaryDirectory()
        cert, key = Path(self._tmp.name, "c.pem"), Path(self._tmp.name, "k.pem")
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        self.ctx.load_cert_chain(cert, key)
        self.anonymous_ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())

    def request(self, method: str, path: str, body=None, *, content_type: str = "application/json",
                headers: dict | None = None, anonymous: bool = False, raw: bytes | None = None):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.anonymous_ctx if anonymous else self.ctx,
                                           timeout=30)
        data = raw if raw is not None else (None if body is None else
                                            (body if isinstance(body, (bytes, str)) else json.dumps(body)))
        hdrs = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = content_type
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        ctype = resp.getheader("Content-Type", "")
        text = payload.decode(errors="replace")
        try:
            parsed = json.loads(text) if text and "json" in ctype else text
        except ValueError:
            parsed = text  # a watch stream: one JSON document per line

        return resp.status, parsed, dict(resp.getheaders())
