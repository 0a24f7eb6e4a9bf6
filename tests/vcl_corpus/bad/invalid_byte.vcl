# expect: 4:30: Syntax error at 'ï¿½'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv { set req.url = ÿ; }
