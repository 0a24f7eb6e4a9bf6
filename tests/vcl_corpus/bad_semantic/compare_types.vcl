# expect: 5:17: Comparison of different types: STRING '==' INT
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if (req.url == 1) {}
}
