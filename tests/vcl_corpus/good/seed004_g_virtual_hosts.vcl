# Seed 004: virtual hosts by regex on Host, with `elsif` (backends added).
vcl 4.1;

backend foo { .host = "127.0.0.1"; .port = "8081"; }
backend bar { .host = "127.0.0.1"; .port = "8082"; }

sub vcl_recv {
    if (req.http.host ~ "foo.com") {
        set req.backend_hint = foo;
    } elsif (req.http.host ~ "bar.com") {
        set req.backend_hint = bar;
    }
}
