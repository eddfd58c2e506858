"""Container runtime of the node agent: a CRI-shaped interface (api) and its runc/conmon implementation."""
