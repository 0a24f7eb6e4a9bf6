# expect: 5:21: Unterminated long-string
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_synth {
    set resp.body = {"<html>
    return (deliver);
}
