# expect: 5:19: Syntax error at '@'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    set req.http.a@b = "x";
}
