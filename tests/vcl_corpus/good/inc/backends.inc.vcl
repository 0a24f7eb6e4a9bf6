# Included by own_includes.vcl (path relative to the including file's directory).
vcl 4.1;

backend app1 { .host = "127.0.0.1"; .port = "8081"; }
backend app2 { .host = "127.0.0.1"; .port = "8082"; }

include "nested.inc.vcl";
