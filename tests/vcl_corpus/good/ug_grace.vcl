# Users guide "Grace mode and keep" (vcl-grace.rst), all examples in one file.
vcl 4.1;

import std;

backend default { .host = "127.0.0.1"; .port = "8080"; }

sub vcl_backend_response {
     set beresp.grace = 2m;
     set beresp.keep = 8m;
}

sub vcl_hit {
     return (deliver);
}

# Misbehaving servers: long grace, capped to 10s while the backend is healthy.
sub vcl_backend_response {
     set beresp.grace = 24h;
     // no keep - the grace should be enough for 304 candidates
}

sub vcl_recv {
     if (std.healthy(req.backend_hint)) {
          // change the behavior for healthy backends: Cap grace to 10s
          set req.grace = 10s;
     }
}

# Stop cache insertion when a background fetch returns a 5xx.
sub vcl_backend_response {
     if (beresp.status >= 500 && bereq.is_bgfetch) {
          return (abandon);
     }
}
