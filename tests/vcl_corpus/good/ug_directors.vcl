# vmod_directors(3) examples (Varnish 7.1): round_robin, fallback, random, hash and shard,
# with named arguments and ENUM values.
vcl 4.1;

import directors;

backend s1 { .host = "127.0.0.1"; .port = "8081"; }
backend s2 { .host = "127.0.0.1"; .port = "8082"; }

sub vcl_init {
    new vdir = directors.round_robin();
    vdir.add_backend(s1);
    vdir.add_backend(s2);

    new fb = directors.fallback(sticky = true);
    fb.add_backend(s1);
    fb.add_backend(s2);

    new rnd = directors.random();
    rnd.add_backend(s1, 10.0);
    rnd.add_backend(s2, 5.0);

    new h = directors.hash();
    h.add_backend(s1, 1.0);
    h.add_backend(s2, 1.0);

    new vd = directors.shard();
    vd.add_backend(s1);
    vd.add_backend(s2);
    vd.set_warmup(180);
    vd.reconfigure();

    new p = directors.shard_param();
    p.set(by=KEY, key=5);
    p.set(by=KEY, key=7, healthy=IGNORE);
}

sub vcl_recv {
    if (req.url ~ "^/rr/") {
        set req.backend_hint = vdir.backend();
    } else if (req.url ~ "^/hash/") {
        set req.backend_hint = h.backend(req.http.cookie);
    } else if (req.url ~ "^/random/") {
        set req.backend_hint = rnd.backend();
    } else {
        set req.backend_hint = fb.backend();
    }
}

sub vcl_backend_fetch {
    set bereq.backend = vd.backend(by=URL, resolve=LAZY);
    set bereq.backend = vd.backend(param=p.use());
    set bereq.backend = vd.backend(by=KEY, key=vd.key(bereq.url), alt=bereq.retries);
}
