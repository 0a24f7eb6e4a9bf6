# expect: 5:5: 'elsif' without a preceding 'if'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    elsif (req.url) { }
}
