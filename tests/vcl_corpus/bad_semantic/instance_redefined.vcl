# expect: 7:9: Instance 'd' redefined.
vcl 4.1;
import directors;
backend default { .host = "127.0.0.1"; }
sub vcl_init {
    new d = directors.round_robin();
    new d = directors.round_robin();
}
