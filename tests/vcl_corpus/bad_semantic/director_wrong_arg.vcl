# expect: 7:19: Expression has type STRING, expected BACKEND
vcl 4.1;
import directors;
backend default { .host = "127.0.0.1"; }
sub vcl_init {
    new d = directors.round_robin();
    d.add_backend("default");
}
