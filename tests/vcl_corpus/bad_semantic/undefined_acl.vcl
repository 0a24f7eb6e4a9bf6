# expect: 5:21: Undefined acl nosuch, first reference:
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if (client.ip ~ nosuch) {}
}
