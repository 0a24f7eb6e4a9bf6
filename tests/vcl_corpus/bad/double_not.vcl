# expect: 5:10: Unknown token '!' when looking for an expression
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if (!!req.url) { }
}
