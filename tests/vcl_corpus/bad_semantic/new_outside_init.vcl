# expect: 6:5: Not a valid action in subroutine 'vcl_recv'.
vcl 4.1;
import directors;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    new d = directors.round_robin();
}
