# expect: 6:18: Threshold can not be greater than window.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
probe p {
    .window = 3;
    .threshold = 4;
}
backend b { .host = "127.0.0.1"; .probe = p; }
sub vcl_recv { set req.backend_hint = b; }
