# expect: 4:9: Name 'p' is already defined as a probe.
vcl 4.1;
probe p { .url = "/"; }
backend p { .host = "127.0.0.1"; .probe = p; }
