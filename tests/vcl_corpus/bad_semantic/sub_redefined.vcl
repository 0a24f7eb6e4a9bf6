# expect: 6:5: Subroutine 'f' redefined
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub f {
}
sub f {
}
sub vcl_recv { call f; }
