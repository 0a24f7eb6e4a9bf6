# expect: 5:5: Name 'default' is already defined as a backend.
vcl 4.1;
probe default { .url = "/"; }
backend default { .host = "127.0.0.1"; }
acl default { "127.0.0.1"; }
sub vcl_recv { if (client.ip ~ default) { return (pass); } }
