"""The ingress's certificates: a context per kubernetes.io/tls Secret chosen by SNI (exact names
before wildcards, as the Ingress's spec.tls lists them), the fallback for every other name and for
a Secret that holds no usable pair."""
import base64

from ketch.ingress.tls import SniContexts, self_signed


def secret(name, cn, rv="1"):
    cert, key = self_signed(cn, (cn,))
    return {"metadata": {"name": name, "namespace": "web", "resourceVersion": rv}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}


def test_sni_selection():
    sni = SniContexts()
    secrets = {"web/exact": secret("exact", "a.foo.com"), "web/wild": secret("wild", "*.foo.com"),
               "web/broken": {"metadata": {"name": "broken", "resourceVersion": "1"}, "data": {"tls.crt": "eA=="}}}
    sni.update([("*.foo.com", "web/wild"), ("a.foo.com", "web/exact"), ("b.bar.com", "web/broken"),
                ("c.bar.com", "web/missing")], secrets)
    exact, wild = sni.context_for("a.foo.com"), sni.context_for("B.foo.com.")
    assert exact is not sni.fallback and wild is not sni.fallback and exact is not wild
    assert sni.context_for("x.y.foo.com") is sni.fallback      # a wildcard covers one label
    assert sni.context_for("b.bar.com") is sni.fallback        # unusable Secret
    assert sni.context_for("c.bar.com") is sni.fallback        # missing Secret
    assert sni.context_for(None) is sni.fallback               # no SNI at all
    # Unchanged Secrets keep their contexts; a new resourceVersion builds a new one.
    sni.update([("a.foo.com", "web/exact")], secrets)
    assert sni.context_for("a.foo.com") is exact
    secrets["web/exact"] = secret("exact", "a.foo.com", rv="2")
    sni.update([("a.foo.com", "web/exact")], secrets)
    assert sni.context_for("a.foo.com") is not exact
