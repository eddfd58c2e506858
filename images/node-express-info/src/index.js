console.log("stand-in: ketch runs this image with busybox httpd (see /usr/local/bin/node)");
