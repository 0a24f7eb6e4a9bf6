# Seed 002: grace in vcl_hit, written for Varnish 4.0, where `return (fetch)` in vcl_hit
# meant "go to the backend" (later spelled `return (miss)`). Verbatim apart from the added
# `vcl 4.0;`, `import std;` and backend.
vcl 4.0;

import std;

backend default { .host = "127.0.0.1"; .port = "8080"; }

sub vcl_hit {
    if (obj.ttl >= 0s) {
        # A pure unadultered hit, deliver it
        return (deliver);
    }
    if (!std.healthy(req.backend_hint) && (obj.ttl + obj.grace > 0s)) {
        return (deliver);
    } else {
        return (fetch);
    }
}
