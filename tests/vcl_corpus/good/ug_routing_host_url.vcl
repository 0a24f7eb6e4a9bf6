# Routing by Host and URL between two backends with header normalisation: the shape of the
# issue's 30-line benchmark VCL.
vcl 4.1;

import std;

backend web { .host = "127.0.0.1"; .port = "8081"; }
backend api { .host = "127.0.0.1"; .port = "8082"; }

sub vcl_recv {
    set req.http.host = std.tolower(regsub(req.http.host, ":[0-9]+$", ""));
    if (req.http.host == "api.example.com" || req.url ~ "^/api/") {
        set req.backend_hint = api;
        set req.url = regsub(req.url, "^/api", "");
    } elseif (req.http.host ~ "(^|\.)example\.com$") {
        set req.backend_hint = web;
    } else {
        return (synth(404, "Unknown host"));
    }
    unset req.http.X-Forwarded-Host;
    if (req.url ~ "\?$") {
        set req.url = regsub(req.url, "\?$", "");
    }
    if (req.http.Accept-Encoding !~ "gzip") {
        unset req.http.Accept-Encoding;
    }
    if (!std.healthy(req.backend_hint)) {
        return (synth(503, "Backend unavailable"));
    }
}

sub vcl_deliver {
    set resp.http.X-Served-By = "ringcache";
    unset resp.http.Via;
}
