#!/bin/sh
printf 'Content-Type: text/html\r\n\r\n'
printf '<html><head><title>HTTP Whalesay</title></head><body><pre>\n'
cowsay "${NODE_MESSAGE:-Hello from $(hostname)}" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g'
printf '</pre><p>%s</p></body></html>\n' "$(hostname)"
