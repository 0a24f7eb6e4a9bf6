# expect: 3:13: Expected '.' got 'host'
vcl 4.1;
backend b { host = "127.0.0.1"; }
