# expect: 3:1: Unterminated inline C source
vcl 4.1;
C{ int x;
backend default { .host = "127.0.0.1"; }
