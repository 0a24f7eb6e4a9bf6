# Included by inc/backends.inc.vcl, relative to inc/.
acl trusted { "127.0.0.1"; }
