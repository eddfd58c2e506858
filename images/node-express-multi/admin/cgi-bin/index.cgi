#!/bin/sh
printf 'Content-Type: text/html\r\n\r\n'
echo "<html><body><h1>Admin</h1><p>Fake admin interface of $(hostname) on port 8888</p></body></html>"
