# expect: 5:27: Expected a string got 'req'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if (req.url ~ "^/a" + req.url) { }
}
