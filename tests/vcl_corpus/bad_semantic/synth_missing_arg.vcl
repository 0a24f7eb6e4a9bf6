# expect: 5:18: Missing argument.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    return (synth);
}
