vcl 4.1;

# .expect_close is Varnish 7.3+; .port is a ringcache extension (a dedicated health port).
probe health_port {
    .url = "/healthz";
    .port = "8081";
    .expect_close = false;
}

backend app {
    .host = "127.0.0.1";
    .port = "8080";
    .probe = health_port;
}

backend plain {
    .host = "127.0.0.2";
    .probe = { .url = "/"; .expect_close = true; }
}

sub vcl_recv {
    if (req.url ~ "^/plain") {
        set req.backend_hint = plain;
    } else {
        set req.backend_hint = app;
    }
}
