# Seed 004: virtual hosts by exact Host match (backend added).
vcl 4.1;

backend foo { .host = "127.0.0.1"; .port = "8081"; }

sub vcl_recv {
    if (req.http.host == "foo.com" || req.http.host == "www.foo.com") {
        set req.backend_hint = foo;
    }
}
