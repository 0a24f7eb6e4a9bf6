# expect: 5:10: Undefined sub nosuch, first reference:
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    call nosuch;
}
