# expect: 5:5: Non-zero bits in masked part, (maybe use 10.0.0.0/8 ?)
vcl 4.1;
backend default { .host = "127.0.0.1"; }
acl a {
    "10.1.2.3"/8;
}
sub vcl_recv { if (client.ip ~ a) {} }
