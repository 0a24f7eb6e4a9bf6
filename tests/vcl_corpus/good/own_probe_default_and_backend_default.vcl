# `probe default` and `backend default` together: probes and backends are different symbol
# kinds (varnishd 7.1 accepts this). The default probe is the implicit probe of every backend
# without `.probe` (`default` here), `.probe = default` names it explicitly (`b`), and an own
# probe wins (`c`).
vcl 4.1;

probe default {
    .url = "/health";
    .interval = 2s;
}

probe other {
    .url = "/other";
}

backend default { .host = "127.0.0.1"; }
backend b { .host = "127.0.0.2"; .probe = default; }
backend c { .host = "127.0.0.3"; .probe = other; }

sub vcl_recv {
    if (req.url ~ "^/b/") {
        set req.backend_hint = b;
    } else if (req.url ~ "^/c/") {
        set req.backend_hint = c;
    } else {
        set req.backend_hint = default;
    }
}
