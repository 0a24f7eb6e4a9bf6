# Seed 003 (Plone forum: health checks of Zope instances behind HAProxy) contains no VCL: it
# uses haproxy's `option httpchk /Plone/@@some_view`, `check port 8090 inter 5s fastinter 2s
# downinter 2s fall 1 rise 2 maxconn 1`, and mentions `varnishadm backend.list`. The same
# intent in VCL 4.1: one probe on a view that exercises the site, several instances with one
# connection each, round-robin over the healthy ones.
vcl 4.1;

import directors;

probe plone {
    .request =
        "GET /Plone/@@some_view HTTP/1.1"
        "Host: localhost"
        "Connection: close";
    .interval = 5s;
    .timeout = 2s;
    .window = 2;
    .threshold = 2;
    .initial = 0;
}

backend instance1 { .host = "127.0.0.1"; .port = "8081"; .probe = plone; .max_connections = 1; }
backend instance2 { .host = "127.0.0.1"; .port = "8082"; .probe = plone; .max_connections = 1; }
backend instance3 { .host = "127.0.0.1"; .port = "8083"; .probe = plone; .max_connections = 1; }

sub vcl_init {
    new zope = directors.round_robin();
    zope.add_backend(instance1);
    zope.add_backend(instance2);
    zope.add_backend(instance3);
}

sub vcl_recv {
    set req.backend_hint = zope.backend();
}
