"""kube-scheduler: places pending pods on nodes (queue, cache, filter and score plugins, binder)."""
