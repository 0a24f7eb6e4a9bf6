# Literals, operators and precedence.
vcl 4.1;

import std;

backend default { .host = "127.0.0.1"; .port = "8080"; }

acl internal { "10.0.0.0"/8; }

sub vcl_recv {
    # durations in every unit, with and without a space, negative
    set req.http.d = 10ms + 2s + 1.5m + 1h + 1d + 1w + 1y + 3 s - -1s;
    # integers and reals
    set req.http.n = 1 + 2 * 3 - 4 / 2 % 3;
    set req.http.r = 1.5 * 2.0 - 0.125;
    set req.http.neg = -1;
    set req.http.negexpr = -std.integer(req.http.x, 0);
    # booleans
    if (true && !false || req.http.x == "y") {
        set req.http.b = "1";
    }
    # comparisons
    if (req.restarts < 1 && req.restarts <= 1 && req.restarts > -1 && req.restarts >= 0 &&
        req.restarts != 2) {
        set req.http.c = "1";
    }
    # regex and ACL matches, negated
    if (req.url ~ "^/a" && req.url !~ "^/b" && client.ip ~ internal && !(client.ip !~ internal)) {
        set req.http.m = "1";
    }
    if (!client.ip ~ internal) {
        return (synth(403));
    }
    # string concatenation and function calls with positional and named arguments
    set req.http.s = "a" + req.url + "b" + std.tolower(req.http.host) + regsuball(req.url, "x", "y");
    set req.http.i = std.integer(s = req.http.x, fallback = 0);
    set req.http.dur = std.duration(req.http.ttl, 10s);
    set req.http.ip = std.ip(req.http.X-Real-IP, "0.0.0.0");
    set req.http.port = std.port(server.ip);
    set req.http.rnd = std.random(0, 100);
    std.collect(req.http.Cookie, "; ");
    # parentheses and type methods
    set req.http.p = (req.http.a + "x");
    set req.http.host = req.http.host.lower();
    set req.backend_hint = default;
    if (req.backend_hint == default) {
        set req.http.q = "1";
    }
    # a quoted header name (VCL 4.1)
    set req.http."X-Quoted" = "q";
    # now and time arithmetic
    if (now - 1h < now) {
        set req.http.t = now;
    }
}

sub vcl_hit {
    if (!std.healthy(req.backend_hint) && (obj.ttl + obj.grace > 0s)) {
        return (deliver);
    }
}
