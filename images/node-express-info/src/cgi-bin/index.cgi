#!/bin/sh
case "$REQUEST_URI" in
  /status*) printf 'HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\nCannot GET %s\n' "$REQUEST_URI"; exit 0;;
esac
addr=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n1)
printf 'Content-Type: text/html\r\n\r\n'
cat <<PAGE
<html><head><title>Node.js Container Info</title></head>
<body>
<h1>Container Info</h1>
<p>Container name (hostname): $(hostname)</p>
<p>Container IP: ${addr:-unknown}</p>
<p>Uptime: $(cut -d. -f1 /proc/uptime) seconds</p>
</body></html>
PAGE
