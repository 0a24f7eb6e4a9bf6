# expect: 4:7: Unused probe p, defined:
vcl 4.1;
backend default { .host = "127.0.0.1"; }
probe p { .url = "/"; }
