# vcl-backend(7) and vcl-probe(7) (Varnish 7.1 reference): every backend and probe attribute.
vcl 4.1;

probe light {
    .url = "/health-probe";
    .expected_response = 418;
    .timeout = 10s;
    .interval = 1m;
    .window = 8;
    .threshold = 3;
    .initial = 2;
}

probe full_request {
    .request = "GET / HTTP/1.1"
        "Host: example.com"
        "X-Magic: We're fine with this."
        "Connection: close";
}

probe default {
    .url = "/";
}

backend foo {
    .host = "127.0.0.1";
    .port = "8081";
    .host_header = "example.com";
    .connect_timeout = 1.4s;
    .first_byte_timeout = 20s;
    .between_bytes_timeout = 10s;
    .max_connections = 1000;
    .proxy_header = 2;
    .preamble = :SGVsbG8gV29ybGRcbgo=:;
    .probe = light;
}

backend bar {
    .host = "[::1]:8080";
    .probe = full_request;
}

backend baz {
    .host = "localhost:8081";    # the reference shows "example.com:8081"
    .probe = default;
}

backend sock {
    .path = "/var/run/http.sock";
}

backend nothing none;

sub vcl_recv {
    if (req.url ~ "^/foo/") {
        set req.backend_hint = foo;
    } elsif (req.url ~ "^/bar/") {
        set req.backend_hint = bar;
    } elsif (req.url ~ "^/baz/") {
        set req.backend_hint = baz;
    } elsif (req.url ~ "^/sock/") {
        set req.backend_hint = sock;
    } else {
        set req.backend_hint = nothing;
    }
}
