# expect: 10:41: Wrong enum value.  Expected one of:
vcl 4.1;
import directors;
backend default { .host = "127.0.0.1"; }
sub vcl_init {
    new s = directors.shard();
    s.add_backend(default);
}
sub vcl_recv {
    set req.backend_hint = s.backend(by=NOPE);
}
