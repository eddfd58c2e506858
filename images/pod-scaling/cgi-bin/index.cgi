#!/bin/sh
case "$REQUEST_URI" in
  /status*) printf 'HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\nCannot GET %s\n' "$REQUEST_URI"; exit 0;;
esac
printf 'Content-Type: text/html\r\n\r\n'
cat <<PAGE
<html><head><title>Pod Scaling v${APP_VERSION}</title></head>
<body style="background-color: ${APP_COLOR}">
<h1>Pod Scaling - v${APP_VERSION}</h1>
<p>Container name (hostname): $(hostname)</p>
</body></html>
PAGE
