# Included by own_includes.vcl through `include +glob "inc/glob/*.inc.vcl";` (first, sorted).
backend app3 { .host = "127.0.0.1"; .port = "8083"; }
