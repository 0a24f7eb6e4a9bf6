# expect: 3:13: NB: Backend Syntax has changed:
vcl 4.1;
backend b { set .host = "127.0.0.1"; }
