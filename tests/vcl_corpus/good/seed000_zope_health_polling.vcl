# Seed 000 ("Varnish 2.0 backend health polling and Zope 2.10", 2009) contains no VCL: it
# describes a Zope backend polled for health, and the wish to serve cached pages past their
# TTL while the backend is down. This is that setup in VCL 4.x syntax (probe + grace).
vcl 4.0;

import std;

backend zope {
    .host = "127.0.0.1";
    .port = "8080";
    .probe = {
        .url = "/";
        .interval = 5s;
        .timeout = 2s;
        .window = 5;
        .threshold = 3;
    }
}

sub vcl_recv {
    if (std.healthy(req.backend_hint)) {
        set req.grace = 10s;
    }
}

sub vcl_backend_response {
    set beresp.grace = 24h;
}
