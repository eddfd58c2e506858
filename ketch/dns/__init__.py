"""Cluster DNS: the cluster.local zone from Services and EndpointSlices (ketch.dns.records) and
the server answering it (ketch.dns.server)."""
