"""The service proxy (kube-proxy, iptables mode): rules.py turns Services and EndpointSlices into
iptables-restore text; proxier.py applies it inside a node's network namespace."""
