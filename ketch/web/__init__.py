"""HTTP(S) plumbing shared by the API server and the kubelet API: certificates and protocol switching."""
