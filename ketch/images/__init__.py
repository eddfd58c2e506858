"""The machine's OCI image store and its sources: archives, a registry client, a builder."""
