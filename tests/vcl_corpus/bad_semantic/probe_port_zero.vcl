# expect: 6:13: Probe .port must be a port number from 1 to 65535, got '"0"'
vcl 4.1;
backend default { .host = "127.0.0.1"; .probe = hc; }
probe hc {
    .url = "/";
    .port = "0";
}
