"""The node agent's ingress controller: Ingresses of its class served as an HTTP/HTTPS reverse
proxy on the host, to the pods behind their Services (routes.py: the rules; http1.py and
proxy.py: the data path; tls.py: certificates by SNI; controller.py: informers, status, listeners)."""
from .controller import IngressController

__all__ = ["IngressController"]
