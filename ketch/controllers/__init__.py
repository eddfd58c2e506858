"""Controllers: clients of the API that move actual state towards desired state."""
