# Seed 004: layered directors. `dcprio.add_backend(dc1);` passes a director object where a
# backend is expected (Varnish takes `dc1.backend()`); verbatim. Backends added.
vcl 4.1;

import directors;

backend server1A { .host = "192.168.1.10"; }
backend server1B { .host = "192.168.1.11"; }
backend server2A { .host = "192.168.2.10"; }
backend server2B { .host = "192.168.2.11"; }

sub vcl_init {
    new dc1 = directors.round_robin();
    dc1.add_backend(server1A);
    dc1.add_backend(server1B);

    new dc2 = directors.round_robin();
    dc2.add_backend(server2A);
    dc2.add_backend(server2B);

    new dcprio = directors.fallback();
    dcprio.add_backend(dc1);
    dcprio.add_backend(dc2);
}

sub vcl_recv {
    set req.backend_hint = dcprio.backend().resolve();
}
