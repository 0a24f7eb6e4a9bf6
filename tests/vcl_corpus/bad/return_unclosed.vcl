# expect: 5:28: Expected ')' got ';'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    return (synth(200, "x");
}
