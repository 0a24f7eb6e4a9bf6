# expect: 4:7: Probe 'p' redefined.
vcl 4.1;
probe p { .url = "/a"; }
probe p { .url = "/b"; }
backend default { .host = "127.0.0.1"; .probe = p; }
