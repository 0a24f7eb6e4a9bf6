vcl 4.1;
# The routing VCL of docs/benchmarks.md: host and URL regex routing between two backends and
# header normalisation. bench.sh writes a copy with @PORT@ replaced by the origin's port.
import std;

backend web { .host = "127.0.0.1"; .port = "@PORT@"; }
backend api { .host = "127.0.0.1"; .port = "@PORT@"; .first_byte_timeout = 5s; }

sub vcl_recv {
    set req.http.Host = std.tolower(regsub(req.http.Host, ":[0-9]+$", ""));
    if (req.http.Host ~ "^(api|rest)\.example\.(com|net)$" || req.url ~ "^/api/") {
        set req.backend_hint = api;
    } elsif (req.url ~ "^/(static|assets|img)/") {
        set req.backend_hint = web;
        unset req.http.Cookie;
    } else {
        set req.backend_hint = web;
    }
    if (req.url ~ "[?&](utm_[a-z]+|gclid|fbclid)=") {
        set req.url = regsuball(req.url, "(utm_[a-z]+|gclid|fbclid)=[^&]*&?", "");
        set req.url = regsub(req.url, "[?&]$", "");
    }
    if (req.http.Accept-Encoding) {
        if (req.http.Accept-Encoding ~ "gzip") {
            set req.http.Accept-Encoding = "gzip";
        } else {
            unset req.http.Accept-Encoding;
        }
    }
}
