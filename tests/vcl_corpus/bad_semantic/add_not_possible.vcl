# expect: 5:11: INT + STRING not possible.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if (1 + "a") {}
}
