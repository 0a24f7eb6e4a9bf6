# expect: 5:5: Not a valid action in subroutine 'vcl_recv'.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    synthetic("x");
}
