"""NetworkPolicy enforcement: iptables filter rules in each node's network namespace."""
