# Every statement form.
vcl 4.1;

import std;
import directors;

backend default { .host = "127.0.0.1"; .port = "8080"; }

sub vcl_init {
    new rr = directors.round_robin();
    rr.add_backend(default);
    std.log("init done");
}

sub helper {
    if (!req.http.cookie) {
        return;
    }
    set req.http.x-had-cookie = "1";
}

sub vcl_recv {
    call helper;
    set req.http.X-Forwarded-For = client.ip;
    set req.http.X-Trail += "a";
    set req.ttl = 10s;
    set req.ttl += 1s;
    set req.ttl -= 1s;
    set req.ttl *= 2.0;
    set req.ttl /= 2.0;
    unset req.http.Cookie;
    {
        set req.http.nested = "block";
        {
            std.log("deeper");
        }
    }
    if (req.method == "GET") {
    } elsif (req.method == "HEAD") {
    } elseif (req.method == "POST") {
        return (pass);
    } elif (req.method == "PUT") {
        return (pipe);
    } else if (req.method == "PRI") {
        return (synth(405));
    } else {
        return (hash);
    }
    if (req.restarts > 0) {
        return (restart);
    }
    return(hash);
}

sub vcl_hash {
    hash_data(req.url);
    hash_data(req.http.host);
    return(lookup);
}

sub vcl_backend_response {
    if (beresp.status == 500) {
        return (retry);
    }
    if (beresp.http.Set-Cookie) {
        return (pass(10s));
    }
    return (deliver);
}

sub vcl_backend_error {
    synthetic("backend error " + beresp.status);
    return (deliver);
}

sub vcl_synth {
    synthetic({"<html><body>"} + resp.status + {"</body></html>"});
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    return (deliver);
}

sub vcl_miss {
    return (fetch);
}

sub vcl_hit {
    if (obj.ttl + obj.grace <= 0s) {
        return (pass);
    }
    return (deliver);
}

sub vcl_pass {
    return (fail);
}

sub vcl_purge {
    return (restart);
}

sub vcl_fini {
    return (ok);
}
