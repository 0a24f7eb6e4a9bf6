# expect: 5:27: Unknown property 'esi' for type HTTP
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_deliver {
    set resp.http.x = req.esi;
}
