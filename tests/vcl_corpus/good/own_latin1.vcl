# Latin-1 bytes, not UTF-8: in a comment (Größe, accepted silently, as varnishd does)
# and in a string (accepted with a warning: the byte becomes U+FFFD).
vcl 4.1;

backend default { .host = "127.0.0.1"; }

sub vcl_deliver {
    set resp.http.X-Cafe = "café";
}
