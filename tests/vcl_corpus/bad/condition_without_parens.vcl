# expect: 5:8: Expected '(' got 'req'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if req.url == "/" { }
}
