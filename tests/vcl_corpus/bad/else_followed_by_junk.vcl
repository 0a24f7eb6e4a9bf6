# expect: 5:27: 'else' must be followed by 'if' or '{'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if (req.url) { } else foo { }
}
