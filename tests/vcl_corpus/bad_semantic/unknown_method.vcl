# expect: 7:7: Unknown property 'nope' for type directors.round_robin
vcl 4.1;
import directors;
backend default { .host = "127.0.0.1"; }
sub vcl_init {
    new d = directors.round_robin();
    d.nope(default);
}
