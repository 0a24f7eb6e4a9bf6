# Seed 004's prose suggests `if (req.http.User-agent ~ /mobile/) ..` for mobile devices; that
# is pseudo-code (a VCL regex is a string). The 4.x version of the idea:
vcl 4.1;

backend default { .host = "127.0.0.1"; .port = "8080"; }
backend mobile { .host = "127.0.0.1"; .port = "8090"; }

sub vcl_recv {
    if (req.http.User-agent ~ "(?i)mobile") {
        set req.backend_hint = mobile;
    }
}
