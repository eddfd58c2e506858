"""The ingress rules as pure functions: which Ingresses a class serves, host and path matching
(the Ingress spec's tables), precedence across Ingresses, backends resolved by port number and
name to ready endpoints."""
from ketch.ingress.routes import (EXACT, PREFIX, Backend, build_table, host_matches, normalize_host,
                                  path_matches, resolve_endpoints, serves, tls_hosts)


def ing(name, rules=(), default=None, cls=None, annotation=None, created="2026-01-01T00:00:00Z", ns="default", tls=None):
    meta = {"name": name, "namespace": ns, "creationTimestamp": created}
    if annotation:
        meta["annotations"] = {"kubernetes.io/ingress.class": annotation}
    spec = {"rules": list(rules)}
    if cls:
        spec["ingressClassName"] = cls
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    if tls:
        spec["tls"] = tls
    return {"metadata": meta, "spec": spec}


def rule(host, *paths):
    return {**({"host": host} if host else {}), "http": {"paths": [
        {"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": {"number": 80}}}}
        for p, t, svc in paths]}}


def klass(name, default=False):
    return {"metadata": {"name": name, **({"annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}
                                          if default else {})}}


def test_class_selection():
    assert serves(ing("a", cls="ketch"), "ketch", [klass("ketch")])
    assert not serves(ing("a", cls="traefik"), "ketch", [klass("ketch", True)])
    assert serves(ing("a", annotation="ketch"), "ketch", [klass("traefik", True)])
    assert not serves(ing("a", annotation="nginx"), "ketch", [])
    # class-less: ours when our class is the default, or when there is no IngressClass at all
    assert serves(ing("a"), "ketch", [klass("ketch", True)])
    assert serves(ing("a"), "ketch", [])
    assert not serves(ing("a"), "ketch", [klass("traefik", True), klass("ketch")])
    assert not serves(ing("a"), "ketch", [klass("ketch")])


def test_host_matching_as_the_spec_table():
    assert host_matches("foo.bar.com", "foo.bar.com")
    assert not host_matches("foo.bar.com", "bar.com")
    assert host_matches("*.foo.com", "bar.foo.com")
    assert not host_matches("*.foo.com", "baz.bar.foo.com")   # one label only
    assert not host_matches("*.foo.com", "foo.com")
    assert host_matches("", "anything.example")
    assert normalize_host("A.Whale.Hey:8080") == "a.whale.hey"
    assert normalize_host("[::1]:80") == "[::1]"
    assert normalize_host("x.com.") == "x.com"


def test_path_matching_as_the_spec_examples():
    assert path_matches(PREFIX, "/", "/anything")
    assert path_matches(EXACT, "/foo", "/foo") and not path_matches(EXACT, "/foo", "/bar")
    assert not path_matches(EXACT, "/foo", "/foo/") and not path_matches(EXACT, "/foo/", "/foo")
    assert path_matches(PREFIX, "/foo", "/foo") and path_matches(PREFIX, "/foo", "/foo/")
    assert path_matches(PREFIX, "/foo/", "/foo") and path_matches(PREFIX, "/foo/", "/foo/")
    assert path_matches(PREFIX, "/aaa/bb", "/aaa/bb") and not path_matches(PREFIX, "/aaa/bb", "/aaa/bbb")
    assert path_matches(PREFIX, "/aaa/bbb", "/aaa/bbb/") and path_matches(PREFIX, "/aaa/bbb", "/aaa/bbb/ccc")
    assert not path_matches(PREFIX, "/aaa/bbb/", "/aaa/bbbxyz")


def test_longest_match_first_across_ingresses_exact_before_prefix():
    table = build_table([
        ing("old", [rule("foo.com", ("/", "Prefix", "root"), ("/api", "Prefix", "api"))]),
        ing("new", [rule("foo.com", ("/api/v2", "ImplementationSpecific", "v2"), ("/api", "Exact", "api-exact"),
                         ("/api", "Prefix", "shadowed"))], created="2026-02-01T00:00:00Z"),
    ])
    svc = lambda h, p: (lambda r: r and r.backend.service)(table.match(h, p))  # noqa: E731
    assert svc("foo.com", "/api/v2/x") == "v2"
    assert svc("foo.com", "/api") == "api-exact"
    assert svc("foo.com", "/api/x") == "api"          # the oldest Ingress wins the duplicate /api Prefix
    assert svc("foo.com", "/apix") == "root"
    assert svc("bar.com", "/") is None


def test_host_precedence_and_fall_through():
    table = build_table([ing("a", [rule("", ("/", "Prefix", "any")), rule("*.foo.com", ("/w", "Prefix", "wild")),
                                   rule("x.foo.com", ("/x", "Prefix", "exact"))])])
    m = lambda h, p: table.match(h, p).backend.service  # noqa: E731
    assert m("x.foo.com", "/x") == "exact"
    assert m("x.foo.com", "/w") == "wild"
    assert m("x.foo.com", "/other") == "any"
    assert m("y.foo.com", "/x") == "any"


def test_default_backend_is_the_oldest_ingress():
    table = build_table([ing("young", default="b", created="2026-03-01T00:00:00Z"), ing("old", default="a")])
    assert table.default.service == "a" and table.default_ingress == "default/old"


def test_book_example_converted_form():
    # what the API server stores for Chapter03/whale-ingress.yaml (extensions/v1beta1 → v1)
    book = ing("whale-ingress", [rule("a.whale.hey", ("/", "ImplementationSpecific", "whale-svc-a")),
                                 rule("b.whale.hey", ("/", "ImplementationSpecific", "whale-svc-b"))])
    table = build_table([book])
    assert table.match("a.whale.hey", "/").backend == Backend("default", "whale-svc-a", 80)
    assert table.match("b.whale.hey", "/index.html").backend.service == "whale-svc-b"
    assert table.match("c.whale.hey", "/") is None


SERVICE = {"metadata": {"name": "web", "namespace": "default"},
           "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"},
                              {"name": "admin", "port": 81, "targetPort": 9000}]}}


def slice_(name, *eps, port_name="http", port=8080):
    return {"metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}} for ip, ready in eps]}


def test_backend_port_by_number_and_name_to_ready_endpoints():
    services = {"default/web": SERVICE}
    slices = {"default/web": [slice_("web-1", ("10.42.0.5", True), ("10.42.0.6", False), ("10.42.0.7", None)),
                              slice_("web-2", ("10.42.0.8", True)),
                              slice_("web-3", ("10.42.0.9", True), port_name="admin", port=9000)]}
    by_number = resolve_endpoints(Backend("default", "web", 80), services, slices)
    assert by_number == [("10.42.0.5", 8080), ("10.42.0.7", 8080), ("10.42.0.8", 8080)]
    assert resolve_endpoints(Backend("default", "web", "http"), services, slices) == by_number
    assert resolve_endpoints(Backend("default", "web", "admin"), services, slices) == [("10.42.0.9", 9000)]
    assert resolve_endpoints(Backend("default", "web", 82), services, slices) == []
    assert resolve_endpoints(Backend("default", "nope", 80), services, slices) == []


def test_tls_hosts_default_to_the_rule_hosts():
    got = tls_hosts([ing("a", [rule("a.com", ("/", "Prefix", "x"))], tls=[{"secretName": "s1"},
                                                                         {"hosts": ["*.b.com"], "secretName": "s2"}])])
    assert got == [("a.com", "default/s1"), ("*.b.com", "default/s2")]
