# Backend fields of Varnish 7.3-7.6 ringcache runs: a connection queue at .max_connections
# (.wait_limit, .wait_timeout) and a .via backend whose authority comes from .host_header.
vcl 4.1;
backend onloader { .host = "127.0.0.1"; .port = "8443"; }
backend app {
    .host = "127.0.0.1";
    .port = "8080";
    .max_connections = 50;
    .wait_limit = 100;
    .wait_timeout = 2s;
}
backend tls_origin {
    .host = "192.0.2.20";
    .port = "443";
    .host_header = "secure.example.com:443";
    .via = onloader;
}
sub vcl_recv {
    if (req.url ~ "^/secure/") {
        set req.backend_hint = tls_origin;
    } else {
        set req.backend_hint = app;
    }
}
