# expect: 3:9: Name of backend, 'a.b', contains illegal character '.'
vcl 4.1;
backend a.b { .host = "127.0.0.1"; }
