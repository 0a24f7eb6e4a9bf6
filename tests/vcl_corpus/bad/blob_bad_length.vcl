# expect: 3:46: BLOB must have n*4 base64 characters
vcl 4.1;
backend b { .host = "127.0.0.1"; .preamble = :AAE:; }
